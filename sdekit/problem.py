"""Problems (model + data) and ensembles; all input validation happens here, before any compile."""
from __future__ import annotations

import difflib

import numpy as np

from sdekit.kernels.cuda_arrays import array_module, host, is_cuda_array, on_gpu
from sdekit.codegen.analysis import Param
from sdekit.model import ODE, SDE

MAX_TRAJECTORIES = 2**32


def _on_device(*values) -> bool:
    """Any of ``values`` (or of the arrays inside lists, tuples and dicts of them) is a CUDA array."""
    for v in values:
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, (list, tuple)):
            if _on_device(*v):
                return True
        elif is_cuda_array(v):
            return True
    return False


def _finite_vector(x, d, what):
    """``x`` as a new float64 vector of ``d`` numbers (a copy: changing the caller's array later changes nothing
    here); ValueError for other shapes, non-numbers, complex numbers, NaN or Inf."""
    x = host(x)
    _refuse_complex(x, what)
    try:
        a = np.array(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numeric, got {type(x).__name__}") from None
    if a.ndim == 0 and d == 1:
        a = a.reshape(1)
    if a.shape != (d,):
        raise ValueError(f"{what} must have shape ({d},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or Inf: {a}")
    return a


def _finite_array(a, what, keep_float32: bool = False):
    """The array ``a`` in float64 (``keep_float32``: a float32 array stays float32 — a float32 kernel reads it
    without a float64 copy and back): a copy of a numpy array, a CuPy array (validated on its device, one flag read
    back) as it is; ValueError for non-numbers, NaN or Inf."""
    if a.dtype.kind not in "biuf":       # real numbers (bools as 0 and 1)
        _refuse_complex(a, what)
        raise ValueError(f"{what} must be real numbers, got an array of {a.dtype}")
    dtype = np.float32 if keep_float32 and a.dtype == np.float32 else np.float64
    a = a.astype(dtype, copy=isinstance(a, np.ndarray))    # a host array copied (the caller's may change later);
    # one on the GPU read in place, as DLPack hands it over (no second copy of a large y0 on the device)
    if not bool(array_module(a).isfinite(a).all()):
        raise ValueError(f"{what} contains NaN or Inf")
    return a


def _refuse_complex(x, what):
    """ValueError for complex numbers where a real state or parameter is expected."""
    try:
        complex_ = np.iscomplexobj(np.asarray(x))
    except (TypeError, ValueError):
        return
    if complex_:
        raise ValueError(f"{what} must be real numbers, got complex ones: write a complex state as its real and "
                         "imaginary parts, or declare a complex field, sk.field(name, shape, complex=True)")


def _tspan(tspan):
    try:
        t0, t1 = (float(x) for x in tspan)
    except (TypeError, ValueError):
        raise ValueError(f"tspan must be a pair (t0, t1), got {tspan!r}") from None
    if not (np.isfinite(t0) and np.isfinite(t1)):
        raise ValueError(f"tspan must be finite, got {tspan!r}")
    if t1 == t0:
        raise ValueError(f"tspan must have t1 != t0 (t1 < t0 integrates backwards in time), got {tspan!r}")
    return t0, t1


def _check_names(given: dict, expected, missing_msg: str, unknown_msg: str):
    """ValueError naming the unexpected names in ``given`` (with the close match) and the expected ones missing."""
    missing = [p for p in expected if p not in given]
    unknown = [p for p in given if p not in expected]
    if unknown:
        close = [c for p in unknown for c in difflib.get_close_matches(p, list(expected), n=1)]
        hint = f" (did you mean {close[0]!r}?)" if len(unknown) == 1 and close else ""
        raise ValueError(f"{unknown_msg} {unknown}{hint}; the model has {list(expected)}")
    if missing:
        raise ValueError(f"{missing_msg} {missing}")


class KeywordError(TypeError, ValueError):
    """An unknown or removed keyword: a TypeError as Python raises for one, and a ValueError as
    sdekit raises for every bad input (so ``except ValueError`` catches every user error)."""


def unknown_keyword(fn: str, unknown: dict, valid):
    """KeywordError for the first of ``unknown`` keywords of ``fn``, naming the valid ones and the closest."""
    key = next(iter(unknown))
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return KeywordError(f"{fn}() got an unknown keyword {key!r}{hint} Valid keywords: {', '.join(valid)}")


def keyed_by_name(params, what: str = "params") -> dict:
    """``params`` with each key a parameter's name: an ``sdekit.params`` symbol stands for its name; any other key
    that is not a string is a ValueError naming it."""
    out = {}
    for key, value in dict(params or {}).items():
        name = key.name if isinstance(key, Param) else key
        if not isinstance(name, str):
            raise ValueError(f"{what}: keys are the parameters' names (or their sdekit.params symbols), got {key!r} "
                             f"({type(key).__name__})")
        if name in out:
            raise ValueError(f"{what}: parameter {name!r} is given twice (by its name and by its symbol)")
        out[name] = value
    return out


def _params(model, params):
    params = keyed_by_name(params)
    _check_names(params, model.params, "missing values for parameters", "unknown parameters")
    out = {}
    for name, v in params.items():
        g = on_gpu(v)
        if g is not None and g.ndim == 1:      # per-trajectory values on the GPU stay there (backend="cuda" reads them)
            out[name] = _finite_array(g, f"parameter {name!r}")
            continue
        _refuse_complex(host(v), f"parameter {name!r}")
        try:
            a = np.array(host(v), dtype=float)      # a copy: the caller's array may change later
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name!r} must be a number or an array of numbers, got {v!r}") from None
        if a.ndim > 1:
            raise ValueError(f"parameter {name!r} must be a scalar or an array of shape (n,), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"parameter {name!r} contains NaN or Inf")
        out[name] = a
    return out


def _whole(x) -> bool:
    """x is a whole number (an int, or a float/numpy scalar equal to one), not a bool."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(x)) and int(x) == x


def _integer(x, what):
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {x!r}")
    return int(x)


class _Problem:
    model_type = None

    def __init__(self, model, y0=None, tspan=None, params=None, nets=None, **unknown):
        if unknown:
            raise unknown_keyword(type(self).__name__, unknown, ["model", "y0", "tspan", "params", "nets"])
        for name, value in (("y0", y0), ("tspan", tspan)):
            if value is None:
                raise ValueError(f"{type(self).__name__}() needs {name}: {type(self).__name__}(model, y0, tspan, "
                                "params=..., nets=...)")
        if not isinstance(model, self.model_type):
            raise ValueError(f"{type(self).__name__} needs a sdekit.{self.model_type.__name__} model, got {type(model).__name__}")
        self.model = model
        #: the inputs were CUDA arrays (CuPy, torch): ``sol.y`` is a CuPy array (backend="cuda": the kernel's own
        #: output).  Per-trajectory parameters stay on the GPU (as CuPy arrays, validated there); y0 (d numbers),
        #: scalars and weights are read through the host.
        self.on_device = _on_device(y0, params, nets)
        self.y0 = _finite_vector(y0, model.dim, "y0")
        self.tspan = _tspan(tspan)
        self.params = _params(model, params)
        nets = dict(nets or {})
        _check_names(nets, list(model.nets), "missing weights for networks", "weights given for unknown networks")
        from sdekit.nets import check_weights
        for name, w in nets.items():
            check_weights(model.nets[name], w, np.float64)  # fail early; cast again per dtype at solve
        self.nets = nets

    def __eq__(self, other):
        """Same model, initial value, span, parameter values and weights (pickle round trips are equal)."""
        from sdekit.nets import check_weights
        if type(other) is not type(self) or other.model != self.model or other.tspan != self.tspan:
            return False
        if not np.array_equal(other.y0, self.y0) or other.params.keys() != self.params.keys():
            return False
        if any(not np.array_equal(host(other.params[k]), host(v)) for k, v in self.params.items()):
            return False
        if other.nets.keys() != self.nets.keys():
            return False
        for name, w in self.nets.items():
            net = self.model.nets[name]
            if callable(w) and not hasattr(w, "__iter__") and type(w).__name__ != "Sequential":   # External: the same callable
                if w is not other.nets[name]:
                    return False
                continue
            mine, theirs = check_weights(net, w, np.float64), check_weights(net, other.nets[name], np.float64)
            if any(not (np.array_equal(a, c) and np.array_equal(b, d)) for (a, b), (c, d) in zip(mine, theirs)):
                return False
        return True

    __hash__ = object.__hash__     # problems hold arrays: equal by value, hashed by identity

    def __getstate__(self):
        """Pickled with host arrays (per-trajectory parameters on the GPU copied): a pickle loads anywhere."""
        return dict(self.__dict__, params={k: host(v) for k, v in self.params.items()})

    @property
    def backwards(self) -> bool:
        """True when the problem integrates backwards in time (t1 < t0)."""
        return self.tspan[1] < self.tspan[0]

    def time_reversed(self):
        """The problem in reversed time s = −t on (−t0, −t1) (:meth:`ODE.time_reversed`): forward
        when this one runs backwards."""
        rev = object.__new__(type(self))
        rev.__dict__.update(self.__dict__)
        rev.model, rev.tspan = self.model.time_reversed(), (-self.tspan[0], -self.tspan[1])
        return rev

    def time_changed(self):
        """For a linear part ℓ(t)·I: (the problem in u = U(t) on (U(t0), U(t1)), U, T = U⁻¹) (:meth:`ODE.time_changed`)."""
        model, U, T = self.model.time_changed(self.tspan)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.model, new.tspan = model, (float(U(self.tspan[0])), float(U(self.tspan[1])))
        return new, U, T

    def __repr__(self):
        return f"{type(self).__name__}({self.model!r}, tspan={self.tspan})"


class ODEProblem(_Problem):
    """An ODE model with initial value, time span, parameter values and network weights."""
    model_type = ODE


class SDEProblem(_Problem):
    """An SDE model with initial value, time span, parameter values and network weights."""
    model_type = SDE


class Ensemble:
    """n trajectories of a problem: ``Ensemble(prob, n=4096, seed=0)`` or ``Ensemble(prob, y0=Y0, seed=0)``.

    ``Y0`` has shape (n, d); parameter values of the problem may be arrays of shape (n,).
    ``first`` is the global index of the first trajectory: trajectory ``first + i`` gets
    the same noise in any ensemble, so any chunk can be recomputed alone (:meth:`chunk`).
    """

    def __init__(self, problem, n=None, *, y0=None, seed=0, first=0, **unknown):
        if unknown:
            raise unknown_keyword("Ensemble", unknown, ["problem", "n", "y0", "seed", "first"])
        if not isinstance(problem, _Problem):
            raise ValueError(f"Ensemble needs an ODEProblem or SDEProblem, got {type(problem).__name__}")
        d = problem.model.dim
        self.on_device = problem.on_device or _on_device(y0)
        if y0 is not None:
            Y0 = on_gpu(y0)          # a CUDA y0 stays on the GPU (a CuPy array, validated there)
            if Y0 is None:
                _refuse_complex(host(y0), "ensemble y0")
                try:
                    Y0 = np.asarray(host(y0), dtype=float)
                except (TypeError, ValueError):
                    raise ValueError(f"ensemble y0 must be numeric, got {type(y0).__name__}") from None
            if Y0.ndim != 2 or Y0.shape[1] != d:
                raise ValueError(f"ensemble y0 must have shape (n, {d}), got {Y0.shape}")
            if n is not None and n != Y0.shape[0]:
                raise ValueError(f"n={n} but y0 has {Y0.shape[0]} rows")
            Y0 = _finite_array(Y0, "ensemble y0", keep_float32=True)     # a float32 y0 stays float32
            n = Y0.shape[0]
        if not _whole(n) or n < 1:
            raise ValueError(f"Ensemble needs an integer n >= 1 (or y0 of shape (n, d)), got n={n!r}")
        n = int(n)
        for name, v in problem.params.items():
            if v.ndim == 1 and v.shape[0] != n:
                raise ValueError(f"parameter {name!r} has {v.shape[0]} values for an ensemble of {n}")
        seed, first = _integer(seed, "seed"), _integer(first, "first")
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2^64), got {seed}")
        if first < 0 or first + n > MAX_TRAJECTORIES:
            raise ValueError(f"trajectory indices [{first}, {first + n}) must lie in [0, 2^32)")
        self.problem, self.n, self.seed, self.first = problem, n, seed, first
        self.y0 = Y0 if y0 is not None else np.broadcast_to(problem.y0, (n, d))

    def __getstate__(self):
        """Pickled with host arrays (a y0 on the GPU copied), the problem's y0 for every trajectory not n times."""
        state = dict(self.__dict__, y0=host(self.y0))
        if self.y0.ndim == 2 and state["y0"].strides[0] == 0:
            state["y0"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.y0 is None:
            self.y0 = np.broadcast_to(self.problem.y0, (self.n, self.problem.model.dim))

    def __eq__(self, other):
        return (isinstance(other, Ensemble) and other.problem == self.problem and
                (other.n, other.seed, other.first) == (self.n, self.seed, self.first) and
                getattr(other, "_param_slice", None) == getattr(self, "_param_slice", None) and
                np.array_equal(host(other.y0), host(self.y0)))

    __hash__ = object.__hash__

    @property
    def trajectories(self) -> np.ndarray:
        return np.arange(self.first, self.first + self.n, dtype=np.int64)

    def chunk(self, start: int, stop: int) -> "Ensemble":
        """Trajectories ``start .. stop-1`` (local indices) as an ensemble of their own."""
        if not 0 <= start < stop <= self.n:
            raise ValueError(f"chunk [{start}, {stop}) outside [0, {self.n})")
        sub = object.__new__(Ensemble)
        sub.problem, sub.n, sub.seed, sub.first = self.problem, stop - start, self.seed, self.first + start
        sub.y0 = self.y0[start:stop]
        base = getattr(self, "_param_slice", (0, self.n))[0]
        sub._param_slice = (base + start, base + stop)
        return sub

    def params(self) -> dict:
        """Parameter values for these trajectories (per-trajectory arrays sliced for a chunk)."""
        start, stop = getattr(self, "_param_slice", (0, self.n))
        return {k: (v[start:stop] if v.ndim == 1 else v) for k, v in self.problem.params.items()}

    def __repr__(self):
        return f"Ensemble({self.problem!r}, n={self.n}, seed={self.seed}, first={self.first})"
