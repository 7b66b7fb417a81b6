"""``ODE`` and ``SDE``: a user's model, analysed once into its semilinear form."""
from __future__ import annotations

import numpy as np
import sympy as sp

from sdekit.codegen.analysis import analyse, time_reversed
from sdekit.codegen.lowering import lambdify_exact


class _Model:
    stochastic = False

    def __init__(self, form):
        self.form = form
        self._sources = {}
        self._host = {}     # host-side numpy functions of L and G (codegen.host), the reversed model

    # pickling (a dask worker gets the model): the form only; the generated source and host functions
    # are rebuilt where they are needed (the kernel itself comes from that machine's on-disk cache)
    def __getstate__(self):
        return {"form": self.form}

    def __setstate__(self, state):
        _Model.__init__(self, state["form"])

    def _key(self) -> tuple:
        """What makes two models the same model: its kind and its semilinear form."""
        f = self.form
        frozen = [None if m is None else sp.ImmutableMatrix(m) for m in (f.linear, f.affine, f.nonlinear, f.diffusion)]
        numeric = None if f.linear_numeric is None else (f.linear_numeric.shape, f.linear_numeric.tobytes())
        return (type(self).__name__, f.states, *frozen, numeric, f.noise, f.linear_time)

    def __eq__(self, other):
        return isinstance(other, _Model) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def time_reversed(self):
        """The same model in reversed time s = −t (``codegen.analysis.time_reversed``), built once:
        what ``solve`` integrates forward when a problem's tspan runs backwards (t1 < t0)."""
        if "reversed" not in self._host:
            rev = object.__new__(type(self))
            _Model.__init__(rev, time_reversed(self.form))
            self._host["reversed"] = rev
        return self._host["reversed"]

    def time_change_branches(self) -> list:
        """[(sign, U, T)] of a linear part ℓ(t)·I (``codegen.analysis.time_change_branches``), found once."""
        from sdekit.codegen.analysis import time_change_branches
        if "time_change" not in self._host:
            self._host["time_change"] = time_change_branches(self.form.linear_time)
        return self._host["time_change"]

    def _time_change_numeric(self):
        """(ℓ, [(U, T) per branch]) as numpy functions, lambdified once."""
        if "time_change_numeric" not in self._host:
            from sdekit.codegen.analysis import t as time
            fns = [(lambdify_exact(time, U), lambdify_exact(time, T)) for _, U, T in self.time_change_branches()]
            self._host["time_change_numeric"] = (lambdify_exact(time, self.form.linear_time), fns)
        return self._host["time_change_numeric"]

    def linear_time_at(self, t) -> float:
        """ℓ(t) of a linear part ℓ(t)·I, as a number."""
        return float(self._time_change_numeric()[0](float(t)))

    def changed_model(self, branch: int):
        """The model in u = U(t) of branch ``branch`` of :meth:`time_change_branches`, built once."""
        from sdekit.codegen.analysis import time_changed
        key = ("time_changed", branch)
        if key not in self._host:
            sign, _, T = self.time_change_branches()[branch]
            changed = object.__new__(type(self))
            _Model.__init__(changed, time_changed(self.form, sign, T))
            self._host[key] = changed
        return self._host[key]

    def time_change_branch(self, tspan) -> int:
        """The branch whose U increases and whose T inverts U on ``tspan``, where ℓ must keep one sign (both checked
        at 257 points; ValueError naming what fails)."""
        ell, fns = self._time_change_numeric()
        grid = np.linspace(min(tspan), max(tspan), 257)
        with np.errstate(all="ignore"):
            values = np.broadcast_to(np.asarray(ell(grid), dtype=float), grid.shape)
        if not (np.all(values > 0) or np.all(values < 0)):
            raise ValueError(f"the linear part ℓ(t) = {self.form.linear_time} must keep one sign on tspan {tuple(tspan)} "
                             "(u = ±∫ℓ dt must be monotone); it is zero or changes sign there")
        for k, ((sign, _, _), (U, T)) in enumerate(zip(self.time_change_branches(), fns)):
            with np.errstate(all="ignore"):
                u = np.asarray(U(grid), dtype=complex)
                back = np.asarray(T(u.real), dtype=complex)
            if sign * values[0] > 0 and np.all(np.abs(u.imag) == 0) and \
                    np.all(np.abs(back - grid) <= 1e-8 * (1 + np.abs(grid))):
                return k
        raise ValueError(f"no closed-form inverse of u = ±∫ℓ dt (ℓ(t) = {self.form.linear_time}) found by sympy holds "
                         f"on tspan {tuple(tspan)}: put ℓ(t)·y in nonlinear=")

    def time_changed(self, tspan):
        """For a linear part ℓ(t)·I: (the model in u = U(t) = ±∫ℓ dt, U, T = U⁻¹ as numpy functions) of the branch
        valid on ``tspan`` (:meth:`time_change_branch`)."""
        k = self.time_change_branch(tspan)
        return (self.changed_model(k), *self._time_change_numeric()[1][k])

    @property
    def states(self) -> sp.Matrix:
        return sp.Matrix(self.form.states)

    @property
    def dim(self) -> int:
        return self.form.dim

    @property
    def linear(self):
        """The exact constant linear part L (sympy Matrix, exact rationals kept; or the numeric array given)."""
        if self.form.linear_exact is not None:
            return self.form.linear_exact
        return self.form.linear if self.form.linear is not None else self.form.linear_numeric

    @property
    def linear_structure(self) -> str:
        """"zero" | "scalar" | "diagonal" | "dense" (compiled; values are runtime data)."""
        return self.form.linear_structure

    @property
    def affine(self) -> sp.Matrix:
        """c(t): the part of the drift that does not depend on y."""
        return self.form.affine

    @property
    def nonlinear(self) -> sp.Matrix:
        """N(y, t): everything else (network calls, nonlinear and t-dependent linear terms)."""
        return self.form.nonlinear

    @property
    def params(self) -> tuple:
        return tuple(p.name for p in self.form.params)

    @property
    def nets(self) -> dict:
        return dict(self.form.nets)

    def __repr__(self):
        kind = type(self).__name__
        ell = self.form.linear_time
        structure = self.linear_structure if ell is None else f"({ell})·I"      # ℓ(t)·I: solved in u = ±∫ℓ dt
        return (f"{kind}(dim={self.dim}, L={structure}, params={list(self.params)}, "
                f"nets={list(self.nets)}" + (f", noise={self.noise!r}, additive={self.additive})" if self.stochastic else ")"))


class ODE(_Model):
    """``dy/dt = drift(y, t)``, or ``ODE(y, linear=L, nonlinear=N)`` for an explicit split.

    ``linear`` may be a sympy Matrix or a numeric array (runtime data, never unrolled).
    """

    def __init__(self, y, rhs=None, *, linear=None, nonlinear=None):
        super().__init__(analyse(y, drift=rhs, linear=linear, nonlinear=nonlinear))


class SDE(_Model):
    """Itô SDE ``dy = drift dt + diffusion dW``; ``noise`` is "scalar", "diagonal" (default) or "general"."""

    stochastic = True

    def __init__(self, y, drift=None, diffusion=None, noise=None, *, linear=None, nonlinear=None):
        if diffusion is None:
            from sdekit.codegen.errors import ModelError
            raise ModelError("SDE needs a diffusion; use sdekit.ODE for a deterministic model")
        super().__init__(analyse(y, drift=drift, diffusion=diffusion, noise=noise, linear=linear, nonlinear=nonlinear))

    @property
    def noise(self) -> str:
        return self.form.noise

    @property
    def additive(self) -> bool:
        """True when G does not depend on y."""
        return self.form.additive

    @property
    def diffusion(self) -> sp.Matrix:
        return self.form.diffusion
