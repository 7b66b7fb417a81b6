"""Diffusion schedules (issue 16, first part: sdekit.diffusion): VP's α² + σ² = 1, the derived
f and g² against their closed forms, λ(t(λ)) = λ for every schedule (closed-form inverses against
the numeric one), and the forward SDE built from f and g reproducing the schedule's marginals
(Monte Carlo on the solver itself)."""
import numpy as np
import pytest
import sympy as sp

import sdekit as sk
from sdekit import diffusion as D

t = sk.t
SCHEDULES = {
    "vp-linear": D.vp_linear(), "vp-cosine": D.vp_cosine(), "vp-user": D.vp(sp.Rational(1, 2) + 3 * t**2),
    "sub-vp": D.sub_vp(), "ve": D.ve(), "edm": D.edm(), "flow": D.flow_matching(), "flow-shift3": D.flow_matching(3),
    "mean-reverting": D.mean_reverting(1 + t, sp.Rational(1, 2)), "discrete": D.DiscreteVP.scaled_linear(),
}


@pytest.mark.parametrize("name", ["vp-linear", "vp-cosine", "vp-user"])
def test_vp_schedules_preserve_variance(name):
    s = SCHEDULES[name]
    assert sp.simplify(s.alpha**2 + s.sigma**2 - 1) == 0
    ts = np.linspace(*s.t_range, 50)
    np.testing.assert_allclose(s("alpha", ts) ** 2 + s("sigma", ts) ** 2, 1.0, rtol=1e-14)


def test_derived_coefficients_are_the_closed_forms():
    assert sp.simplify(SCHEDULES["vp-linear"].g2 - (sp.Rational(1, 10) + sp.Rational(199, 10) * t)) == 0   # g² = β
    assert sp.simplify(SCHEDULES["vp-linear"].f + (sp.Rational(1, 10) + sp.Rational(199, 10) * t) / 2) == 0  # f = −β/2
    assert sp.simplify(SCHEDULES["vp-user"].g2 - (sp.Rational(1, 2) + 3 * t**2)) == 0
    assert sp.simplify(SCHEDULES["mean-reverting"].g2 - 2 * sp.Rational(1, 4) * (1 + t)) == 0          # σ² = 2λ²θ
    assert sp.simplify(SCHEDULES["mean-reverting"].f + (1 + t)) == 0                                  # f = −θ
    assert SCHEDULES["ve"].f == 0 and SCHEDULES["edm"].g2 == 2 * t
    s = SCHEDULES["vp-cosine"]
    ts = np.linspace(*s.t_range, 9)                     # g² = −2σ² dλ/dt (methods.md §2.1)
    dlam = sp.lambdify(t, sp.diff(s.lam, t), "numpy")(ts)
    np.testing.assert_allclose(s("g2", ts), -2 * s("sigma", ts) ** 2 * dlam, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_t_of_lambda_inverts_lambda(name):
    s = SCHEDULES[name]
    ts = np.linspace(*s.t_range, 41)[1:-1]
    lam = s("lam", ts)
    assert np.all(np.diff(lam) < 0)                      # λ decreases: noise grows with t
    np.testing.assert_allclose(s.t_of_lambda(lam), ts, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s("lam", s.t_of_lambda(lam)), lam, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["vp-linear", "vp-cosine", "ve", "edm"])
def test_closed_form_inverses_agree_with_the_numeric_inverse(name):
    s = SCHEDULES[name]
    numeric = D.Schedule(s.name, s.alpha, s.sigma, s.t_range)          # no closed form: bisection
    lam = s("lam", np.linspace(*s.t_range, 23)[1:-1])
    np.testing.assert_allclose(numeric.t_of_lambda(lam), s.t_of_lambda(lam), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["vp-linear", "ve", "flow", "mean-reverting"])
def test_the_forward_sde_reproduces_the_marginals(name):
    """x_T | x_{t0} ~ N((α_T/α_0) x0, σ_T² − (α_T/α_0)² σ_0²): EM at dt = span/512 on 2·10^4 paths
    (bias O(dt) well under the 5-standard-error bands: VE's variance, the largest, uses ~0.5 of its band over
    seeds 1-3, 0.7 at span/256)."""
    s = SCHEDULES[name]
    t0, t1 = s.t_range[0], min(s.t_range[1], 0.9)
    y = sk.states("x", 2)
    x0 = np.array([1.5, -0.5])
    prob = sk.SDEProblem(s.forward_sde(y), y0=x0, tspan=(t0, t1))
    n = 20000
    xT = sk.solve(sk.Ensemble(prob, n=n, seed=1), "EM", dt=(t1 - t0) / 512, backend="numpy").y[:, -1]
    a0, aT, s0, sT = s("alpha", t0), s("alpha", t1), s("sigma", t0), s("sigma", t1)
    mean, var = aT / a0 * x0, sT**2 - (aT / a0) ** 2 * s0**2
    assert np.all(np.abs(xT.mean(axis=0) - mean) < 5 * np.sqrt(var / n) + 1e-3 * np.abs(mean)), (xT.mean(axis=0), mean)
    assert np.all(np.abs(xT.var(axis=0) / var - 1) < 5 * np.sqrt(2 / n) + 5e-3), (xT.var(axis=0), var)


def test_discrete_schedule_is_the_alphas_cumprod_table():
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    abar = np.cumprod(1 - betas)
    s = D.DiscreteVP(abar)
    np.testing.assert_allclose(s("alpha", s.t_grid) ** 2, abar, rtol=1e-14)
    np.testing.assert_allclose(s("alpha", s.t_grid) ** 2 + s("sigma", s.t_grid) ** 2, 1, rtol=1e-14)
    with pytest.raises(ValueError, match="decreasing 1-d array"):
        D.DiscreteVP(abar[::-1])
    with pytest.raises(ValueError, match="gives alpha, sigma and lam"):
        s("f", 0.5)


def test_bad_schedules_are_named():
    with pytest.raises(ValueError, match="may depend on sk.t only"):
        D.Schedule("bad", sp.exp(-sp.Symbol("u") * t), 1)
    s = D.Schedule("numeric", SCHEDULES["vp-linear"].alpha, SCHEDULES["vp-linear"].sigma, (1e-3, 1.0))
    with pytest.raises(ValueError, match="outside"):
        s.t_of_lambda(50.0)
