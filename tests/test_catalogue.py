"""Every catalogue method proves its claims from its tableau: no method is listed by hand here, so a
new table cannot skip its proof.  (The ODE convergence test iterates over the catalogue too,
test_methods.test_claimed_order; the SDE strong and weak orders below do.)"""
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


# ---- SDE weak orders, every stochastic catalogue method --------------------------------------------
# Common random numbers: each dt runs on the same Brownian paths as its reference, so the estimate of
# E f(y_h) − E f(y) has the variance of the *strong* error (methods.md §7, recipe 4) and 2·10^4 paths
# resolve weak errors down to ~1e-5.  φ(y) = y² (mean and variance both enter).

def _weak_errors(ens, method, levels, reference):
    """|mean(y_h(T)² − y_ref(T)²)| for dt = 2^-k, k in levels, on the paths of ``ens``."""
    import numpy as np

    import sdekit as sk
    errs = []
    for k in levels:
        yh = sk.solve(ens, method, dt=2.0**-k, backend="numpy").y[:, -1, 0]
        errs.append(abs(np.mean(yh**2 - reference**2)))
    return errs


def _gbm():
    """dy = μ y dt + σ y dW: y(T) = y0 exp((μ − σ²/2)T + σ W(T)) exactly, from the solve's own W(T)."""
    import numpy as np
    import sympy as sp

    import sdekit as sk
    mu, sigma, y0 = 1.0, 0.5, 0.8
    y = sk.states("y", 1)
    prob = sk.SDEProblem(sk.SDE(y, drift=sp.Matrix([mu * y[0]]), diffusion=sigma * y[0], noise="scalar"),
                         y0=np.array([y0]), tspan=(0.0, 1.0))
    ens = sk.Ensemble(prob, n=20000, seed=5)
    w = sk.brownian_tree(ens).query(1.0)[0]
    return ens, y0 * np.exp(mu - sigma**2 / 2 + sigma * w)


def _additive_reference(method_name):
    """The additive problem of the strong test on 2·10^4 paths, and a reference at dt = 2^-9 by an
    SRA method other than the one under test (SOSRA, or SRA1 for SOSRA itself)."""
    import sdekit as sk
    ens = sk.Ensemble(_sde_problem(additive=True), n=20000, seed=5)
    ref = "SRA1" if method_name == "SOSRA" else "SOSRA"
    return ens, sk.solve(ens, ref, dt=2.0**-9, backend="numpy").y[:, -1, 0]


@pytest.mark.slow
@pytest.mark.parametrize("method", SDE_METHODS, ids=[m.name for m in SDE_METHODS])
def test_sde_method_shows_its_catalogued_weak_order(method):
    """Each stochastic method converges in E[y(T)²] at least at its catalogued weak order (less 0.3, the
    SciML tolerance): against the exact GBM solution when it takes multiplicative noise, else against
    an independent SRA reference on a nonlinear, time-dependent additive problem."""
    from sdekit.testing import observed_order
    if method.requires_additive:
        ens, reference = _additive_reference(method.name)
    else:
        ens, reference = _gbm()
    levels = [1, 2, 3, 4, 5] if method.weak_order >= 2 else [3, 4, 5, 6, 7]
    errs = _weak_errors(ens, method.name, levels, reference)
    p = observed_order([2.0**-k for k in levels], errs)
    print(method.name, "weak order", p, errs)
    assert p >= method.weak_order - 0.3, (method.name, p, errs)


def test_sra_weak_order_on_the_ornstein_uhlenbeck_variance():
    """Weak order of an SRA tableau on dy = a y dt + σ dW, exactly: with g constant its noise term is
    σ(ΔW + k1·a ΔZ + k2·a²h ΔZ), ΔZ = ∫W ds, k1 = Σ α_i B0_i·, k2 = Σ α_i A0_ij B0_j·.  Its variance
    σ²(h + k1 a h² + (k1²/3 + k2) a² h³) must match σ²(e^{2ah} − 1)/(2a) = σ²(h + a h² + ⅔a²h³ + …)
    through h³ for weak order 3: k1 = 1 and k2 = 1/3.  SRA1/SRA3/SOSRA have k2 = 0 (explicit stages), so their
    weak order is 2 — the catalogue's SRA3 entry says 2 for that reason, not the 3 quoted in the
    StochasticDiffEq docs; the weak-order test above measures 2.0."""
    import sympy as sp
    for m in [m for m in SDE_METHODS if m.family.name == "sra"]:
        tab = m.tableau
        alpha = sp.Matrix(tab.alpha)
        B0_rows = sp.Matrix(tab.B0) * sp.ones(len(tab.alpha), 1)
        k1 = (alpha.T * B0_rows)[0]
        k2 = (alpha.T * sp.Matrix(tab.A0) * B0_rows)[0]
        assert sp.nsimplify(k1, rational=True, tolerance=1e-12) == 1, (m.name, k1)
        weak = 3 if abs(float(k1**2 / 3 + k2) - sp.Rational(2, 3)) < 1e-12 else 2
        assert weak == m.weak_order, (m.name, k1, k2)


# ---- a family's derived flags are what its builder emits -------------------------------------------

def _scheme(method):
    """The method's step scheme on a 2-state model with diagonal L (additive noise for SDEs)."""
    import sympy as sp

    import sdekit as sk
    from sdekit.codegen.builders import build_scheme
    y = sk.states("y", 2)
    drift = sp.Matrix([-y[0] + sp.sin(y[1]), -2 * y[1] + y[0] ** 2 / 4])
    if method.stochastic:
        model = sk.SDE(y, drift=drift, diffusion=sp.Rational(1, 2), noise="diagonal")
    else:
        model = sk.ODE(y, drift)
    return build_scheme(model.form, method)


@pytest.mark.parametrize("method", CATALOGUE, ids=[m.name for m in CATALOGUE])
def test_family_flags_are_what_the_builder_emits(method):
    """FSAL, embedded error, continuous extension, exact Jacobian and φ products, as the family
    derives them from the tableau, agree with the statements and operators of the built scheme."""
    from sdekit.codegen.scheme import EvalJacobian, JacobianOperator, PhiOperator
    fam, tab, scheme = method.family, method.tableau, _scheme(method)
    ode = not method.stochastic               # noise on y_new breaks FSAL and the b_i(θ) slopes
    assert (scheme.fsal is not None) == (fam.fsal(tab) and ode), method.name
    assert (scheme.error is not None) == fam.embedded(tab) == method.adaptive, method.name
    assert (scheme.dense is not None) == (fam.dense(tab) and ode), method.name
    assert any(isinstance(s, EvalJacobian) for s in scheme.all_statements()) == fam.needs_jacobian, method.name
    ops = {**scheme.all_operators(), **scheme.jacobian_operators}
    polys = [op.poly for op in ops.values() if isinstance(op, (PhiOperator, JacobianOperator)) and op.poly]
    assert any(len(atoms) > 1 for poly in polys for _, atoms in poly) == fam.phi_products(tab), method.name
    assert bool(polys) == (fam.operand != "" or method.noise == "convolution"), method.name


def test_check_order_names_the_options_of_the_family():
    from sdekit.codegen import tables as tb
    with pytest.raises(TypeError, match=r"ButcherTableau takes the options .*'embedded'.*not \['stiff'\]"):
        check_order(tb.RK4, stiff=True)
    with pytest.raises(TypeError, match="no method family for tuple"):
        check_order((1, 2))


# ---- every driver keeps the loop IR's rules ---------------------------------------------------------

@pytest.mark.parametrize("method", CATALOGUE, ids=[m.name for m in CATALOGUE])
def test_every_driver_keeps_the_rules_of_the_loop_ir(method):
    """loop.check on the fixed-step driver and (where there is an estimator) the adaptive one,
    for every structure of L its lane operators are built for."""
    from sdekit.codegen import loop
    from sdekit.codegen.drivers import adaptive_loop, fixed_loop
    scheme = _scheme(method)
    loop.check(fixed_loop(scheme, method.stochastic, ("p_k",)))
    if method.adaptive:
        for linear in ("zero", "diagonal", "dense"):     # each lane's operators: lane_operators
            loop.check(adaptive_loop(scheme, method.stochastic, ("p_k", "Lm", "S_L"), linear))


@pytest.mark.parametrize("body, match", [
    ("[Lanes([Let('x', '1.0')]), Lanes([Let('y0_', 'x')])]", "'x' is not defined"),             # across blocks
    ("[Lanes([If('act', [Let('x', '1.0')]), Let('z', 'x')])]", "'x' is not defined"),           # one branch only
    ("[Lanes([If('act', [Let('x', '1.0')], [Let('x', '2.0')]), Let('z', 'x')])]", None),        # both branches
    ("[Lanes([While('act', [Let('x', '1.0')]), Let('z', 'x')])]", "'x' is not defined"),        # loop may not run
    ("[Lanes([Let('z', 'min(1.0, 2.0, 3.0)')])]", "two arguments"),
    ("[Lanes([Let('z', 'y[i]')])]", "'i' is not defined"),
    ("[Lanes([Components([Let('y[i]', 'y[i] + 1.0')])])]", None),
    ("[Set('u', 'q + 1')]", "'q' is not defined"),
    ("[IfAny('1 > 0', [])]", "reads no lane value"),
    ("[Rhs('t0', 'y', 'nowhere')]", "'nowhere' is not a lane vector"),
    ("[Lanes([Let('t0', '1.0')])]", "assigns 't0', a kernel argument"),
    ("[Set('act', '1')]", "shadows a lane"),
    ("[Lanes([Let('z', 'y')])]", "without its component"),
    ("[Lanes([Components([Let('y', '1.0')])])]", "without its component"),
    ("[Lanes([Let('z', 'y[0]')])]", "indexed by other than the component i"),
    ("[Lanes([Reduce('z', '*', 'y[i]')])]", "Reduce op"),
])
def test_the_loop_ir_checker_finds_broken_kernels(body, match):
    _check_kernel(body, match)


def test_a_lane_may_not_take_an_arguments_name():
    """(TASE's stage increments k0, k1 once shadowed the Philox key arguments of the same names.)"""
    from sdekit.codegen import loop
    from sdekit.codegen.loop import Lane, LoopKernel
    with pytest.raises(loop.IRError, match=r"lanes \['t0'\] take the names of kernel arguments"):
        loop.check(LoopKernel("k", "", ("t0",), [Lane("t0", "state", rows="D")], [], []))


def _check_kernel(body, match):
    """``body``: loop-IR statements as text, built from the node classes of ``loop``."""
    from sdekit.codegen import loop
    kernel = loop.LoopKernel("k", "", ("t0",), [loop.Lane("act", "bool"), loop.Lane("y", "state", rows="D")], [],
                             eval(body, vars(loop)))
    if match is None:
        loop.check(kernel)
    else:
        with pytest.raises(loop.IRError, match=match):
            loop.check(kernel)
