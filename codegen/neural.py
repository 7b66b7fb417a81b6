"""Neural networks as opaque sympy terms.

An :class:`MLP` is a *specification* (name, layer sizes, activation); its weights are
runtime data.  Calling it on a state vector returns a column Matrix of :class:`NetCall`
terms, one per output.  The semilinear analysis treats them as nonlinear (they never land
in ``L``) and every emitter evaluates one call group as one forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .errors import ModelError

#: the pre-activation x of the activation table
X = sp.Symbol("x", real=True)
_SIGMOID = (1 + sp.tanh(X / 2)) / 2          # 1/(1 + e^-x) through tanh: no overflow, one tanh

#: σ(x) of each ``MLP`` activation, the one definition every backend prints (Numba: ``numba_lanes``,
#: tanh as the vectorisable ``nb_tanh``; numpy: ``emit_numpy``'s ``act_*`` functions; CUDA: ``emit_cuda``)
ACTIVATIONS = {
    "tanh": sp.tanh(X),
    "relu": sp.Max(X, 0),
    "sigmoid": _SIGMOID,
    "softplus": sp.Max(X, 0) + log1p(sp.exp(-sp.Abs(X))),  # log(1 + e^x) without overflow for large |x|
    "silu": X * _SIGMOID,
    "identity": X,
}

#: σ'(x) where sympy.diff's form is not the one to print (tests/test_activations.py proves each equals
#: sympy.diff of σ): relu' is 0 at 0 (torch's subgradient; sympy's Heaviside(0) is 1/2) and 0 at NaN;
#: softplus' is the sigmoid (diff gives Heaviside, sign and e^-|x| terms)
_DERIVATIVES = {
    "relu": sp.Piecewise((1, X > 0), (0, True)),
    "softplus": _SIGMOID,
}


def activation(kind: str, x=X) -> sp.Expr:
    """σ(x) of the activation ``kind`` (``ACTIVATIONS``), at ``x`` (a sympy expression or symbol)."""
    return ACTIVATIONS[kind].xreplace({X: x})


def activation_grad(kind: str, x=X) -> sp.Expr:
    """σ'(x) of the activation ``kind``, the forward-mode tangent pass's factor: sympy.diff of σ,
    or the equal form of ``_DERIVATIVES``."""
    d = _DERIVATIVES.get(kind)
    return (sp.diff(ACTIVATIONS[kind], X) if d is None else d).xreplace({X: x})


class NetCall(sp.Function):
    """Output ``index`` of the network ``cls.net`` applied to ``inputs``.

    ``NetCall`` is subclassed once per :class:`MLP`, so the term carries its network:
    ``args = (index, *inputs)``.
    """

    net: "MLP"

    @property
    def index(self) -> int:
        return int(self.args[0])

    @property
    def inputs(self) -> tuple:
        return tuple(self.args[1:])

    def __reduce_ex__(self, protocol):
        """Pickled as (its network, its arguments): the class is made per network at run time."""
        return _applied, (self.net, "_call", self.args)

    def fdiff(self, argindex=1):
        """∂ output / ∂ input: a :class:`NetGrad` term (sympy applies the chain rule)."""
        if argindex == 1:
            return sp.Integer(0)
        return self.net._grad(self.args[0], sp.Integer(argindex - 2), *self.inputs)

    def _sympystr(self, printer):
        ins = ", ".join(printer.doprint(a) for a in self.inputs)
        return f"{self.net.name}[{self.index}]({ins})"

    def _latex(self, printer):
        ins = ", ".join(printer.doprint(a) for a in self.inputs)
        return rf"\mathrm{{{self.net.name}}}_{{{self.index}}}({ins})"


class NetGrad(sp.Function):
    """∂ output ``index`` / ∂ input ``wrt`` of the network ``cls.net`` at ``inputs``:
    ``args = (index, wrt, *inputs)``.  Emitters evaluate one Jacobian pass per call group
    (the chain rule through the layers, W_L diag(σ'(·)) … W_1)."""

    net: "MLP"

    @property
    def index(self) -> int:
        return int(self.args[0])

    @property
    def wrt(self) -> int:
        return int(self.args[1])

    @property
    def inputs(self) -> tuple:
        return tuple(self.args[2:])

    def __reduce_ex__(self, protocol):
        return _applied, (self.net, "_grad", self.args)

    def fdiff(self, argindex=1):
        raise ModelError(f"network {self.net.name!r}: second derivatives of networks are not supported")

    def _sympystr(self, printer):
        ins = ", ".join(printer.doprint(a) for a in self.inputs)
        return f"d{self.net.name}[{self.index}]/din[{self.wrt}]({ins})"


def _applied(net, kind: str, args):
    """Unpickle a network term: ``net._call(*args)`` or ``net._grad(*args)``."""
    return getattr(net, kind)(*args)


#: (name, sizes, activation) -> (NetCall, NetGrad) classes: equal networks share their term classes,
#: so a model unpickled in the process that pickled it has equal expressions
_TERM_CLASSES: dict = {}


@dataclass(frozen=True, eq=False)
class MLP:
    """Multilayer perceptron ``sizes[0] -> ... -> sizes[-1]``.

    Hidden layers apply ``activation``; the output layer is linear.  Weights are given at
    solve time as ``[(W1, b1), ...]`` with ``W`` of shape ``(out, in)`` (torch.nn.Linear's
    convention) or as a ``torch.nn.Sequential``.
    """

    name: str
    sizes: tuple
    activation: str = "tanh"

    def __init__(self, name: str, sizes, activation: str = "tanh"):
        if not isinstance(name, str) or not name.isidentifier():
            raise ModelError(f"MLP name must be a Python identifier, got {name!r}")
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ModelError(f"MLP {name!r}: sizes must be >= 2 positive layer widths, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ModelError(f"MLP {name!r}: unknown activation {activation!r}; choose from {tuple(ACTIVATIONS)}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "activation", activation)
        self._bind_terms((name, sizes, activation))

    def _bind_terms(self, key):
        """The sympy term classes of this network (NetCall/NetGrad subclasses carrying it), one per ``key``."""
        if key not in _TERM_CLASSES:
            _TERM_CLASSES[key] = (type(f"NetCall_{self.name}", (NetCall,), {"net": self}),
                                  type(f"NetGrad_{self.name}", (NetGrad,), {"net": self}))
        call, grad = _TERM_CLASSES[key]
        object.__setattr__(self, "_call", call)
        object.__setattr__(self, "_grad", grad)

    def _spec(self) -> tuple:
        return self.name, self.sizes, self.activation

    def __reduce__(self):
        return MLP, self._spec()

    def __eq__(self, other):
        return isinstance(other, MLP) and self._spec() == other._spec()

    def __hash__(self):
        return hash(self._spec())

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def flops(self) -> int:
        """Floating-point operations of one forward pass (multiply-add = 2)."""
        return sum(2 * a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def weight_shapes(self) -> list:
        return [((b, a), (b,)) for a, b in zip(self.sizes[:-1], self.sizes[1:])]

    def __call__(self, y, t=None) -> sp.Matrix:
        inputs = list(sp.Matrix(y)) if not isinstance(y, sp.Basic) or isinstance(y, sp.MatrixBase) else [y]
        if t is not None:
            inputs.append(sp.sympify(t))
        if len(inputs) != self.n_in:
            raise ModelError(
                f"MLP {self.name!r} takes {self.n_in} inputs (sizes {self.sizes}), got {len(inputs)}"
                + (" (t appended)" if t is not None else "")
            )
        return sp.Matrix([self._call(sp.Integer(i), *inputs) for i in range(self.n_out)])

    def __repr__(self):
        return f"MLP({self.name!r}, {list(self.sizes)}, activation={self.activation!r})"


class External(MLP):
    """A network the host calls: any batched callable ``fn(X)``, X (n, n_in) rows of inputs (the state
    components and, when the model passes it, t), returning (n, n_out) — numpy, or a torch module on its
    device (``kernels.numpy_runtime.external_forward`` converts).  The callable is given at solve time as
    the problem's ``nets={name: fn}``, as an MLP's weights are.  It runs on the numpy backend, which calls
    it once per stage on the whole ensemble; fused kernels (Numba, CUDA) cannot call Python."""

    def __init__(self, name: str, n_in: int, n_out: int):
        if not isinstance(name, str) or not name.isidentifier():
            raise ModelError(f"External name must be a Python identifier, got {name!r}")
        if int(n_in) < 1 or int(n_out) < 1:
            raise ModelError(f"External {name!r}: n_in and n_out must be >= 1, got {n_in}, {n_out}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "sizes", (int(n_in), int(n_out)))
        object.__setattr__(self, "activation", "external")
        self._bind_terms(("external", name, self.sizes))

    def _spec(self) -> tuple:
        return self.name, self.sizes[0], self.sizes[1]

    def __reduce__(self):
        return External, self._spec()

    def __eq__(self, other):
        return isinstance(other, External) and self._spec() == other._spec()

    def __hash__(self):
        return hash(("external",) + self._spec())

    @property
    def flops(self) -> int:
        return 0

    def __repr__(self):
        return f"External({self.name!r}, n_in={self.sizes[0]}, n_out={self.sizes[1]})"


def externals_in(nets: dict) -> list:
    """Names of the External networks among a form's ``nets``."""
    return [name for name, net in nets.items() if isinstance(net, External)]


def net_calls(expr) -> set:
    """All NetCall terms inside ``expr`` (a sympy expression or Matrix)."""
    exprs = list(expr) if isinstance(expr, sp.MatrixBase) else [sp.sympify(expr)]
    return set().union(*(e.atoms(NetCall) for e in exprs))


def net_grads(expr) -> set:
    """All NetGrad terms inside ``expr``."""
    exprs = list(expr) if isinstance(expr, sp.MatrixBase) else [sp.sympify(expr)]
    return set().union(*(e.atoms(NetGrad) for e in exprs))


def nets_in(*exprs) -> dict:
    """Networks used in ``exprs``: name -> MLP; a ModelError where two different networks share a name (one
    name is one set of weights: ``nets={name: ...}``)."""
    nets = {}
    for call in set().union(*(net_calls(e) for e in exprs)):
        first = nets.setdefault(call.net.name, call.net)
        if first != call.net:
            a, b = sorted((repr(first), repr(call.net)))
            raise ModelError(f"two different networks are named {call.net.name!r}: {a} and {b}; give each its own "
                             "name")
    return nets
