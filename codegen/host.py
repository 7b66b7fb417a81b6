"""Host-side values of the model's symbolic data: the entries of ``L`` and the additive diffusion
``G`` as numpy functions of the runtime params (sympy ``lambdify``), so a solve needs no generated
module just to read them."""
from __future__ import annotations

import numpy as np

from .analysis import SemilinearForm, t
from .lowering import lambdify_exact


def _entries(form: SemilinearForm) -> list:
    d, L = form.dim, form.linear
    if form.linear_structure == "scalar":
        return [L[0, 0]]
    if form.linear_structure == "diagonal":
        return [L[i, i] for i in range(d)]
    return list(L)


def linear_entries(form: SemilinearForm):
    """``f(params) ->`` the entries of the symbolic ``L``: a scalar (scalar·I), d diagonal entries or d
    rows of d entries, each a float or an (n,) array of per-trajectory values
    (``sdekit.kernels.linear.linear_value`` puts them in the runtime layout)."""
    syms = list(form.params)
    f = lambdify_exact(syms, _entries(form))
    d, structure = form.dim, form.linear_structure

    def entries(params):
        vals = f(*(params[p.name] for p in syms))
        if structure == "scalar":
            return vals[0]
        return [vals[i * d:(i + 1) * d] for i in range(d)] if structure == "dense" else vals
    return entries


def additive_diffusion(form: SemilinearForm):
    """``f(params, t0) ->`` G of additive noise as an array (d, 1 or n) (scalar/diagonal noise) or
    (d, m, 1 or n) (general): what the stochastic convolution of SETD1 needs."""
    syms = list(form.params)
    G = form.diffusion
    f = lambdify_exact([t, *syms], list(G))
    shape = G.shape if form.noise == "general" else (form.dim,)

    def diffusion(params, t0):
        vals = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float))
                                     for v in f(t0, *(params[p.name] for p in syms))))
        return np.array(vals).reshape(shape + (-1,))
    return diffusion
