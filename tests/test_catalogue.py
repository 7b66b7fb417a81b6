"""Every catalogue method proves its claims from its tableau: no method is listed by hand here, so a
new table cannot skip its proof.  (The ODE convergence test iterates over the catalogue too,
test_methods.test_claimed_order; the SDE strong orders below do; weak-order tests are still per method.)"""
import pytest

from sdekit.codegen import check_order
from sdekit.codegen.methods import CATALOGUE
from sdekit.codegen.tableau import ExponentialTableau


def claimed(method):
    """The order the catalogue states for the condition set check_order proves by default."""
    if method.stochastic and method.family.name == "sra":
        return method.strong_order
    return method.stiff_order or method.order


@pytest.mark.parametrize("method", CATALOGUE, ids=[m.name for m in CATALOGUE])
def test_tableau_proves_the_catalogued_order(method):
    report = check_order(method.tableau)
    assert report.order >= claimed(method), (method.name, report)


EXPONENTIAL = [m for m in CATALOGUE if isinstance(m.tableau, ExponentialTableau)]


@pytest.mark.parametrize("method", EXPONENTIAL, ids=[m.name for m in EXPONENTIAL])
def test_exponential_tableau_proves_its_classical_order(method):
    """Exponential RK: the classical order on y' = Ly + N (non-stiff), beside the stiff order above."""
    report = check_order(method.tableau, stiff=False)
    assert report.order >= method.order, (method.name, report)


EMBEDDED = [m for m in CATALOGUE if m.embedded_order is not None and hasattr(m.tableau, "bhat")]


@pytest.mark.parametrize("method", EMBEDDED, ids=[m.name for m in EMBEDDED])
def test_embedded_weights_prove_the_estimator_order(method):
    report = check_order(method.tableau, embedded=True)
    assert report.order >= method.embedded_order, (method.name, report)


DENSE = [m for m in CATALOGUE if getattr(m.tableau, "dense", None) is not None]


def test_dp5_and_tsit5_have_continuous_extensions():
    assert {"DP5", "Tsit5"} <= {m.name for m in DENSE}


@pytest.mark.parametrize("method", DENSE, ids=[m.name for m in DENSE])
def test_continuous_extension_proves_its_order(method):
    """b_i(θ) of the continuous extension: order dense_order at every θ, and not one more."""
    tab = method.tableau
    report = check_order(tab, dense=True)
    assert report.order == tab.dense_order, (method.name, report)


# ---- SDE strong orders, every stochastic catalogue method (numpy backend: no compiles) -------------
SDE_METHODS = [m for m in CATALOGUE if m.stochastic]


def _pairwise_strong_order(prob, method, levels, n=300, seed=11):
    """Strong order from RMS |y_h(T) − y_{h/2}(T)| on the same Brownian paths (self-convergence)."""
    import numpy as np

    import sdekit as sk
    from sdekit.testing import observed_order
    ens = sk.Ensemble(prob, n=n, seed=seed)
    finals = {k: sk.solve(ens, method, dt=2.0**-k, backend="numpy").y[:, -1] for k in levels}
    errs = [np.sqrt(np.mean(np.sum((finals[k] - finals[k + 1]) ** 2, axis=-1))) for k in levels[:-1]]
    return observed_order([2.0**-k for k in levels[:-1]], errs), errs


def _sde_problem(additive: bool):
    """Additive: dy = (−y + sin 2y + ½ cos t) dt + ½ dW (f_y g ≠ 0: order 1.5 needs the Lévy area).
    Multiplicative: dy = (y − y³/4) dt + ½ y dW (scalar noise, G'G ≠ 0: order 1 needs Milstein)."""
    import numpy as np
    import sympy as sp

    import sdekit as sk
    y = sk.states("y", 1)
    if additive:
        model = sk.SDE(y, drift=sp.Matrix([-y[0] + sp.sin(2 * y[0]) + sp.cos(sk.t) / 2]),
                       diffusion=sp.Rational(1, 2), noise="scalar")
    else:
        model = sk.SDE(y, drift=sp.Matrix([y[0] - y[0] ** 3 / 4]), diffusion=y[0] / 2, noise="scalar")
    return sk.SDEProblem(model, y0=np.array([0.8]), tspan=(0.0, 1.0))


@pytest.mark.parametrize("method", SDE_METHODS, ids=[m.name for m in SDE_METHODS])
def test_sde_method_shows_its_catalogued_strong_order(method):
    """Each stochastic method of the catalogue, on the hardest noise it supports (state-dependent
    unless it requires additive noise), converges strongly at its catalogued order (within 0.25)."""
    prob = _sde_problem(additive=method.requires_additive)
    p, errs = _pairwise_strong_order(prob, method.name, list(range(3, 9)))
    print(method.name, "strong order", p, errs)
    assert p >= method.strong_order - 0.25, (method.name, p, errs)
    if not method.requires_additive:     # and not more: the control that the problem is hard enough
        assert p <= method.strong_order + 0.3, (method.name, p, errs)
