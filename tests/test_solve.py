"""solve(): API contract, reproducibility of seeds, networks, bad input, failure retcodes."""
import copy

import numpy as np
import pytest
import sympy as sp

import sdekit as sk


def solve(*args, **kw):
    """Orders and API facts are measured on the numpy reference backend (same step scheme; the
    Numba kernel is checked against it in test_numba.py)."""
    kw.setdefault("backend", "numpy")
    return sk.solve(*args, **kw)
from sdekit.kernels.numpy_runtime import mlp_forward

SIZES = [3, 8, 8, 3]


def _weights(seed=0, sizes=SIZES):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(b, a)) / np.sqrt(a), 0.1 * rng.normal(size=b)) for a, b in zip(sizes[:-1], sizes[1:])]


def neural_sde(noise="diagonal"):
    y = sk.states("y", 3)
    k = sk.params("k")
    net = sk.MLP("f", SIZES, activation="tanh")
    model = sk.SDE(y, drift=k * sp.diag(-1, -5, -20) * y + net(y), diffusion=sp.Rational(1, 5), noise=noise)
    return sk.SDEProblem(model, y0=[1.0, 0.5, -0.5], tspan=(0.0, 1.0), params={"k": 1.0}, nets={"f": _weights()})


def test_design_api_example_shapes():
    prob = neural_sde()
    ens = sk.Ensemble(prob, n=64, seed=0)
    sol = solve(ens, method="SETD1", dt=1e-2, backend="numpy")    # an ensemble saves (t0, t1) by default
    assert sol.t.shape == (2,) and sol.y.shape == (64, 2, 3)
    every = solve(ens, method="SETD1", dt=1e-2, backend="numpy", saveat="steps")
    assert every.t.shape == (101,) and every.y.shape == (64, 101, 3)
    np.testing.assert_array_equal(every.y[:, [0, -1]], sol.y)
    assert sol.retcode == "Success" and set(sol.retcodes) == {"Success"}
    assert sol.stats == {"nf": 100 * 64, "naccept": 100 * 64, "nreject": 0}
    single = solve(prob, "EM", dt=0.25, seed=3)
    assert single.y.shape == (5, 3) and single.retcodes is None
    np.testing.assert_array_equal(single.y[0], prob.y0)


@pytest.mark.parametrize("method,dt", [("SETD1", 2.0**-5), ("EM", 0.1)])
def test_seed_results_do_not_depend_on_ensemble_size_or_chunk(method, dt):
    prob = neural_sde()
    big = solve(sk.Ensemble(prob, n=40, seed=9), method, dt=dt)
    small = solve(sk.Ensemble(prob, n=7, seed=9), method, dt=dt)
    np.testing.assert_array_equal(big.y[:7], small.y)
    chunk = sk.Ensemble(prob, n=40, seed=9).chunk(13, 29)
    np.testing.assert_array_equal(big.y[13:29], solve(chunk, method, dt=dt).y)
    offset = solve(sk.Ensemble(prob, n=5, seed=9, first=20), method, dt=dt)
    np.testing.assert_array_equal(big.y[20:25], offset.y)
    other = solve(sk.Ensemble(prob, n=7, seed=10), method, dt=dt)
    assert not np.allclose(other.y[:, -1], small.y[:, -1])


def test_per_trajectory_params_and_initial_values():
    prob = neural_sde()
    ks = np.array([0.5, 1.0, 2.0])
    Y0 = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    p2 = sk.SDEProblem(prob.model, y0=prob.y0, tspan=prob.tspan, params={"k": ks}, nets=prob.nets)
    sol = solve(sk.Ensemble(p2, y0=Y0, seed=1), "SETD1", dt=0.125)
    for i in range(3):
        pi = sk.SDEProblem(prob.model, y0=Y0[i], tspan=prob.tspan, params={"k": ks[i]}, nets=prob.nets)
        one = solve(sk.Ensemble(pi, n=1, seed=1, first=i), "SETD1", dt=0.125)
        np.testing.assert_allclose(sol.y[i], one.y[0], rtol=1e-13, atol=1e-15)


def test_mlp_matches_numpy_and_euler_step_uses_it():
    w = _weights(5)
    x = np.random.default_rng(0).normal(size=(3, 10))
    ref = x
    for i, (W, b) in enumerate(w):
        ref = W @ ref + b[:, None]
        ref = np.tanh(ref) if i < len(w) - 1 else ref
    np.testing.assert_allclose(mlp_forward(w, np.tanh, tuple(x)), ref, rtol=1e-13, atol=1e-15)
    y = sk.states("y", 3)
    net = sk.MLP("g", SIZES)
    prob = sk.ODEProblem(sk.ODE(y, net(y)), y0=x[:, 0], tspan=(0, 0.1), nets={"g": w})
    np.testing.assert_allclose(solve(prob, "Euler", dt=0.1).y[-1], x[:, 0] + 0.1 * ref[:, 0], rtol=1e-14)


def test_mlp_with_time_input():
    y = sk.states("y", 2)
    net = sk.MLP("g", [3, 5, 2], activation="relu")
    w = _weights(2, [3, 5, 2])
    prob = sk.ODEProblem(sk.ODE(y, net(y, sk.t)), y0=[0.3, -0.2], tspan=(0.5, 0.75), nets={"g": w})
    got = solve(prob, "Euler", dt=0.25).y[-1]
    h = np.maximum(w[0][0] @ np.array([0.3, -0.2, 0.5]) + w[0][1], 0)
    np.testing.assert_allclose(got, np.array([0.3, -0.2]) + 0.25 * (w[1][0] @ h + w[1][1]), rtol=1e-14)


def test_mlp_matches_torch_sequential():
    torch = pytest.importorskip("torch", reason="torch is an optional extra (pip install -e '.[torch]')")
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 3)).double()
    y = sk.states("y", 3)
    prob = sk.ODEProblem(sk.ODE(y, sk.MLP("f", SIZES)(y)), y0=[0.1, 0.2, 0.3], tspan=(0, 0.5), nets={"f": seq})
    got = solve(prob, "Euler", dt=0.5).y[-1]
    with torch.no_grad():
        want = np.array([0.1, 0.2, 0.3]) + 0.5 * seq(torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13)
    bad = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 3))
    with pytest.raises(ValueError, match="activations"):
        sk.ODEProblem(prob.model, y0=[0, 0, 0], tspan=(0, 1), nets={"f": bad})
    L1, L2, L3 = seq[0], seq[2], seq[4]
    misplaced = torch.nn.Sequential(L1, L2, torch.nn.Tanh(), torch.nn.Tanh(), L3)     # were run as L1 tanh L2 tanh L3
    with pytest.raises(ValueError, match="are not Linear, activation, Linear"):
        sk.ODEProblem(prob.model, y0=[0, 0, 0], tspan=(0, 1), nets={"f": misplaced})

    class Subclass(torch.nn.Sequential):
        pass
    bf16 = copy.deepcopy(seq).to(torch.bfloat16)                      # no numpy bfloat16: upcast
    for layers, tol in ((Subclass(*seq), 1e-13), (torch.nn.ModuleList(list(seq)), 1e-13), (bf16, 3e-2)):
        again = sk.ODEProblem(prob.model, y0=[0.1, 0.2, 0.3], tspan=(0, 0.5), nets={"f": layers})
        np.testing.assert_allclose(solve(again, "Euler", dt=0.5).y[-1], want, rtol=tol)


def test_float32_runs_and_stays_close():
    prob = neural_sde()
    ens = sk.Ensemble(prob, n=16, seed=0)
    a = solve(ens, "SETD1", dt=2.0**-5)
    b = solve(ens, "SETD1", dt=2.0**-5, dtype=np.float32)
    assert b.y.dtype == np.float32
    np.testing.assert_allclose(b.y, a.y, rtol=0, atol=1e-5)


def test_saveat_on_grid():
    prob = neural_sde()
    sol = solve(prob, "EM", dt=0.125, saveat=[0.0, 0.5, 1.0])
    full = solve(prob, "EM", dt=0.125)
    np.testing.assert_array_equal(sol.y, full.y[[0, 4, 8]])
    with pytest.raises(ValueError, match="not on the fixed-step grid"):
        solve(prob, "EM", dt=0.125, saveat=[0.3])


def _brownian_model(t1=1.0):
    y = sk.states("y", 2)   # dy = dW: EM's y_n is W(t_n) up to rounding
    return sk.SDEProblem(sk.SDE(y, drift=sp.zeros(2, 1), diffusion=sp.Matrix([1, 1]), noise="diagonal"),
                         y0=[0.0, 0.0], tspan=(0.0, t1))


def test_every_grid_reads_the_tspan_tree():
    """DESIGN.md: one path per seed on tspan — dt = 2^-7, 0.01, 0.02, 0.001 (tree points), 0.03 (not)
    and adaptive solves all read it, so a coarse dt can be compared with a fine reference."""
    ens = sk.Ensemble(_brownian_model(), n=5, seed=2)
    tree = sk.brownian_tree(ens)
    for dt in (2.0**-7, 0.01, 0.02, 0.001, 0.03):
        sol = solve(ens, "EM", dt=dt, saveat="steps")
        np.testing.assert_allclose(sol.y, tree.paths(sol.t), rtol=0, atol=1e-13)      # (n, nt, m), as sol.y
        W = np.stack([tree.query(t) for t in sol.t])          # (nt, m, n): one walk from t0 for each t
        np.testing.assert_allclose(tree.paths(sol.t), W.transpose(2, 0, 1), rtol=0, atol=1e-13)
    assert np.abs(sol.y[:, -1]).max() > 0.1
    ts = [0.0, 0.1, 0.37, 0.5, 1.0]   # adaptive SRA1 on dy = dW is y = W at the times it steps onto
    ada = solve(ens, "SRA1", rtol=1e-2, atol=1e-2, saveat=ts)
    np.testing.assert_allclose(ada.y, tree.paths(ts), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(tree.paths(ts[1:]), tree.paths(ts)[:, 1:])     # from t0 or not: the same walk
    assert tree.paths([]).shape == (5, 0, tree.m)
    with pytest.raises(ValueError, match="strictly increasing"):
        tree.paths([0.5, 0.1])
    with pytest.raises(ValueError, match="outside the Brownian tree's span"):
        tree.paths([0.5, 2.0])
    with pytest.raises(TypeError, match="no longer takes 'brownian'"):
        solve(ens, "EM", dt=0.1, brownian="steps")
    with pytest.raises(ValueError, match="needs an SDE"):
        sk.brownian_tree(sk.ODEProblem(sk.ODE(sk.states("z", 1), sp.Matrix([0])), y0=[0.0], tspan=(0, 1)))


@pytest.mark.parametrize("tspan", [(0.0, 1.0), (2.5, 3.2), (0.0, 3.0)])
def test_decimal_and_dyadic_sweeps_share_the_path(tspan):
    """dt = 0.01, 0.005, 0.001 and 2^-7 on tspans whose length is not a power of ten: W agrees at the shared
    times (the tree is on [t0, t0 + 10^k], so decimal steps are its points whatever the tspan)."""
    prob = _brownian_model()
    prob = sk.SDEProblem(prob.model, y0=[0.0, 0.0], tspan=tspan)
    ens = sk.Ensemble(prob, n=7, seed=4)
    T = tspan[1] - tspan[0]
    coarse = solve(ens, "EM", dt=0.01, saveat="steps")
    for dt, every in ((0.005, 2), (0.001, 10)):
        np.testing.assert_allclose(solve(ens, "EM", dt=dt, saveat="steps").y[:, ::every], coarse.y, rtol=0, atol=1e-13)
    dyadic = solve(ens, "EM", dt=2.0**-7, saveat="steps")
    shared = [i for i, t in enumerate(dyadic.t) if abs(t * 100 - round(t * 100)) < 1e-9 and t <= tspan[1]]
    assert len(shared) >= 2
    for i in shared:
        j = int(np.argmin(np.abs(coarse.t - dyadic.t[i])))
        np.testing.assert_allclose(dyadic.y[:, i], coarse.y[:, j], rtol=0, atol=1e-13)
    assert np.abs(coarse.y[:, -1]).max() > 0.1 * np.sqrt(T)


def test_general_noise_em_matches_increment_definition():
    y = sk.states("y", 2)
    G = sp.Matrix([[1, 0, 2], [0, 1, -1]]) / 4
    model = sk.SDE(y, drift=sp.zeros(2, 1), diffusion=G, noise="general")
    ens = sk.Ensemble(sk.SDEProblem(model, y0=[0, 0], tspan=(0, 1)), n=20_000, seed=0)
    Y = solve(ens, "EM", dt=0.25).y[:, -1]
    cov = np.array(G * G.T, dtype=float)
    np.testing.assert_allclose(np.cov(Y.T), cov, atol=0.01)


def test_diverging_trajectory_ends_unstable_without_touching_others():
    y = sk.states("y", 1)
    prob = sk.ODEProblem(sk.ODE(y, sp.Matrix([y[0] ** 2])), y0=[0.1], tspan=(0, 2.0))
    Y0 = np.array([[0.1], [50.0], [-0.3]])
    sol = solve(sk.Ensemble(prob, y0=Y0), "RK4", dt=0.01)
    assert list(sol.retcodes) == ["Success", "Unstable", "Success"]
    assert sol.retcode == "Unstable"
    assert np.isnan(sol.y[1, -1, 0])
    alone = solve(sk.Ensemble(prob, y0=Y0[[0, 2]]), "RK4", dt=0.01)
    np.testing.assert_array_equal(sol.y[[0, 2]], alone.y)


@pytest.mark.parametrize("call,exc,match", [
    (lambda p: sk.SDEProblem(p.model, y0=[1, 2], tspan=(0, 1), params={"k": 1}, nets=p.nets), ValueError, r"y0 must have shape \(3,\)"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, np.nan, 2], tspan=(0, 1), params={"k": 1}, nets=p.nets), ValueError, "NaN"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(1, 1), params={"k": 1}, nets=p.nets), ValueError, "t1 != t0"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={}, nets=p.nets), ValueError, r"missing values for parameters \['k'\]"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": 1, "z": 2}, nets=p.nets), ValueError, "unknown parameters"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": 1}, nets={}), ValueError, "missing weights"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": 1},
                             nets={"f": [(np.ones((8, 4)), np.ones(8))] + _weights()[1:]}), ValueError, r"layer 0: W has shape \(8, 4\)"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": 1},
                             nets={"f": _weights()[:2]}), ValueError, "has 3 layers"),
    (lambda p: solve(p, "RK45", dt=0.1), sk.ModelError, "unknown method 'RK45'"),
    (lambda p: solve(p, "RK4", dt=0.1), sk.ModelError, "ODE method but the model is an SDE"),
    (lambda p: solve(p, "EM", dt=0.0), ValueError, "dt must be finite and > 0"),
    (lambda p: solve(p, "EM", dt=-0.1), ValueError, "dt must be finite and > 0"),
    (lambda p: solve(p, "EM", dt=0.1, backend="fortran"), ValueError, "unknown backend"),
    (lambda p: solve(p, "EM", rtol=1e-3), ValueError, "EM has no embedded error estimate"),
    (lambda p: sk.Ensemble(p, n=0), ValueError, "n >= 1"),
    (lambda p: sk.Ensemble(p, n=3, seed=1.7), ValueError, "seed must be an integer"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": "abc"}, nets=p.nets), ValueError,
     "parameter 'k' must be a number"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": 1}, nets={"f": None}), ValueError,
     "list of \\(W, b\\) pairs"),
    (lambda p: solve(sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": np.inf}, nets=p.nets), "EM",
                     dt=0.1), ValueError, "NaN or Inf"),
    (lambda p: sk.Ensemble(p, y0=np.ones((4, 2))), ValueError, r"shape \(n, 3\)"),
    (lambda p: solve(p, "EM", dt=0.1, saveat=[0.2, 0.5, 0.5, 0.8]), ValueError,
     "saveat times 0.5 and 0.5 are the same grid point 0.5: give each time once"),
    (lambda p: solve(p, "EM", dt=0.1, saveat=[0.5, 0.5 + 1e-11]), ValueError, "are the same grid point"),
    (lambda p: solve(p, "EM", dt=0.1, saveat=[0.5, 1.5]), ValueError, r"saveat time 1.5 lies outside tspan \(0, 1\)"),
    (lambda p: solve(sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(1, 0), params={"k": 1}, nets=p.nets), "EM", dt=0.1,
                     saveat=[0.5, -0.5]), ValueError, r"saveat time -0.5 lies outside tspan \(1, 0\)"),
    (lambda p: solve(p, "EM", dt=0.1, tstops=[0.35]), ValueError,
     "tstops control adaptive steps, but this solve takes fixed steps .*give ts= a grid that contains them"),
    (lambda p: solve(p, "EM", dt=0.1, maxiters=10, controller="I"), ValueError,
     "maxiters, controller control adaptive steps"),
    (lambda p: solve(sk.Ensemble(p, n=2, seed=1), "EM", dt=0.1, seed=5), ValueError,
     r"seed=5: an Ensemble carries its own seed \(1\); build it with Ensemble\(..., seed=5\)"),
    (lambda p: sk.SDEProblem(p.model, y0=[1j, 1, 2], tspan=(0, 1), params={"k": 1}, nets=p.nets), ValueError,
     "y0 must be real numbers, got complex ones"),
    (lambda p: sk.SDEProblem(p.model, y0=np.array([1j, 1, 2]), tspan=(0, 1), params={"k": 1}, nets=p.nets), ValueError,
     "y0 must be real numbers, got complex ones"),
    (lambda p: sk.Ensemble(p, y0=np.ones((2, 3)) * 1j), ValueError, "ensemble y0 must be real numbers, got complex"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": 1j}, nets=p.nets), ValueError,
     "parameter 'k' must be real numbers, got complex"),
    (lambda p: sk.SDEProblem(p.model, y0=[1, 1, 2], tspan=(0, 1), params={"k": 1}, nets={"f": "weights.pt"}), ValueError,
     "got the path 'weights.pt': load it first"),
    (lambda p: solve(p, "Tsit4", dt=0.1), sk.ModelError, r"did you mean 'Tsit5'\?.*sk.diffusion.SAMPLERS"),
])
def test_bad_input_raises_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call(neural_sde())


def test_an_ensemble_solved_with_its_own_seed_is_the_same_solve():
    """seed= names the ensemble's own seed (an SDE), or does nothing (an ODE: no noise to seed)."""
    ens = sk.Ensemble(_brownian_model(), n=4, seed=3)
    np.testing.assert_array_equal(solve(ens, "EM", dt=0.1, seed=3, backend="numpy").y,
                                  solve(ens, "EM", dt=0.1, backend="numpy").y)
    y = sk.states("y", 1)
    ode = sk.Ensemble(sk.ODEProblem(sk.ODE(y, -y), [1.0], (0, 1)), n=2, seed=3)
    np.testing.assert_array_equal(solve(ode, "RK4", dt=0.1, seed=1, backend="numpy").y,
                                  solve(ode, "RK4", dt=0.1, backend="numpy").y)


def test_problems_keep_their_own_copies_of_the_callers_arrays():
    """Changing y0 or a parameter array after building a problem or an ensemble changes nothing in it."""
    prob = neural_sde()
    y0, k = np.array([1.0, 0.5, -0.5]), np.array([1.0, 2.0])
    p = sk.SDEProblem(prob.model, y0=y0, tspan=(0, 1), params={"k": k}, nets=prob.nets)
    Y0 = np.ones((2, 3))
    ens = sk.Ensemble(p, y0=Y0, seed=0)
    before = solve(ens, "EM", dt=0.1, backend="numpy").y
    y0[:], k[:], Y0[:] = np.nan, np.nan, np.nan
    assert np.all(np.isfinite(p.y0)) and np.all(np.isfinite(p.params["k"])) and np.all(np.isfinite(ens.y0))
    np.testing.assert_array_equal(solve(ens, "EM", dt=0.1, backend="numpy").y, before)


def test_saveat_on_a_fixed_grid_saves_each_requested_time_once():
    """Each saveat time is its own grid point, in order: the states are those of a solve saving every step."""
    y = sk.states("y", 1)
    prob = sk.ODEProblem(sk.ODE(y, sp.Matrix([-y[0]])), [1.0], (0, 1))
    every = solve(prob, "RK4", dt=0.1, backend="numpy")
    some = solve(prob, "RK4", dt=0.1, saveat=[0.2, 0.5, 0.8], backend="numpy")
    np.testing.assert_array_equal(some.y, every.y[[2, 5, 8]])
    np.testing.assert_allclose(some.t, [0.2, 0.5, 0.8])


def test_a_float32_tolerance_below_its_precision_is_raised_with_a_warning():
    """rtol < ε of the float type cannot be met (float32 at rtol 1e-12 ran to MaxIters, 600 000 evaluations): raised
    to ε with a warning; float64 keeps rtol = 1e-12, and rtol = 0 (absolute control) stays."""
    y = sk.states("y", 2)
    prob = sk.ODEProblem(sk.ODE(y, sp.Matrix([y[1], -y[0]])), [1.0, 0.0], (0, 10))
    with pytest.warns(UserWarning, match=r"rtol below the float32 rounding unit cannot be met: raised to 1.19e-07"):
        sol = solve(prob, "Tsit5", rtol=1e-12, atol=1e-14, dtype=np.float32, saveat=[10.0], backend="numpy")
    assert sol.retcode == "Success"
    np.testing.assert_allclose(sol.y[-1], [np.cos(10.0), -np.sin(10.0)], atol=1e-4)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve(prob, "Tsit5", rtol=1e-12, atol=1e-14, saveat=[10.0], backend="numpy")
        solve(prob, "Tsit5", rtol=0.0, atol=1e-6, saveat=[10.0], dtype=np.float32, backend="numpy")


def test_sde_method_on_ode_problem_and_multiplicative_setd1():
    y = sk.states("y", 1)
    ode = sk.ODEProblem(sk.ODE(y, -y), y0=[1.0], tspan=(0, 1))
    with pytest.raises(sk.ModelError, match="EM is an SDE method but the"):
        solve(ode, "EM", dt=0.1)
    mult = sk.SDEProblem(sk.SDE(y, drift=-y, diffusion=y[0]), y0=[1.0], tspan=(0, 1))
    with pytest.raises(sk.ModelError, match="needs additive noise"):
        solve(mult, "SETD1", dt=0.1)


def test_array_params_need_an_ensemble():
    prob = neural_sde()
    p2 = sk.SDEProblem(prob.model, y0=prob.y0, tspan=prob.tspan, params={"k": np.ones(3)}, nets=prob.nets)
    with pytest.raises(ValueError, match="need an Ensemble"):
        solve(p2, "EM", dt=0.1)
    with pytest.raises(ValueError, match="has 3 values for an ensemble of 5"):
        sk.Ensemble(p2, n=5)


def test_methods_catalogue_and_inspect():
    names = {m["name"] for m in sk.methods()}
    assert {"Euler", "RK4", "ETD1", "ETDRK4", "EM", "SETD1"} <= names
    src = sk.inspect(neural_sde().model, "setd1", backend="numpy")
    assert "def kernel(" in src and "mlp_forward" in src and "ops['S'] * zeta" in src
    ode = sk.ODEProblem(sk.ODE(sk.states("y", 1), -sk.states("y", 1)), y0=[1.0], tspan=(0, 1))
    assert solve(ode, "expeuler", dt=0.5).method == "ETD1"  # aliases, case-insensitive


def test_a_misspelt_solve_keyword_names_the_valid_ones():
    ode = sk.ODEProblem(sk.ODE(sk.states("y", 1), -sk.states("y", 1)), y0=[1.0], tspan=(0, 1))
    with pytest.raises(TypeError, match=r"unknown keyword 'rtoll'; did you mean 'rtol'\? Valid keywords: method, dt, ts, backend"):
        sk.solve(ode, "RK4", dt=0.1, rtoll=1e-3)
    with pytest.raises(ValueError, match="unknown keyword 'rtoll'"):     # KeywordError: a ValueError too
        sk.solve(ode, "RK4", dt=0.1, rtoll=1e-3)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_progress_bar_on_every_backend(backend, capsys):
    """progress=True: a tqdm bar that reaches the end (numba: trajectories whose blocks are done; numpy: steps);
    nothing is printed when off."""
    ens = sk.Ensemble(_brownian_model(), n=300, seed=1)
    quiet = solve(ens, "EM", dt=0.01, backend=backend)
    assert capsys.readouterr().err == ""
    loud = solve(ens, "EM", dt=0.01, backend=backend, progress=True)
    err = capsys.readouterr().err
    assert "100%" in err and ("300/300" in err if backend == "numba" else "100/100" in err)
    np.testing.assert_array_equal(loud.y, quiet.y)


def test_saving_more_than_the_memory_budget_warns(monkeypatch):
    """A single problem saves every step, an ensemble its endpoints; a solve whose saved states would pass
    MEMORY_BUDGET warns (before allocating) and says how to save less."""
    ens = sk.Ensemble(_brownian_model(), n=50, seed=1)
    monkeypatch.setenv("SDEKIT_MEMORY_BUDGET_GB", str(50 * 2 * 8 * 20 / 2**30))
    with pytest.warns(UserWarning, match=r"saves 101 states of 50 trajectories.*pass saveat="):
        solve(ens, "EM", dt=0.01, saveat="steps", backend="numpy")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert solve(ens, "EM", dt=0.01, backend="numpy").y.shape == (50, 2, 2)
    with pytest.raises(ValueError, match="saveat must be times or 'steps'"):
        solve(ens, "EM", dt=0.01, saveat="every")
    with pytest.raises(ValueError, match="for single problems"):
        solve(ens, "SRA1", rtol=1e-2, saveat="steps")
    monkeypatch.setenv("SDEKIT_MEMORY_BUDGET_GB", "abc")
    with pytest.raises(ValueError, match="SDEKIT_MEMORY_BUDGET_GB must be a number of GiB > 0, got 'abc'"):
        solve(ens, "EM", dt=0.01, backend="numpy")


def test_solution_plots_paths_bands_and_histograms(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ens = sk.Ensemble(_brownian_model(), n=200, seed=3)
    sol = solve(ens, "EM", dt=0.01, saveat=np.linspace(0, 1, 11), backend="numpy")
    ax = sol.plot()                                        # an ensemble saved at 11 times: quantile bands
    assert len(ax.collections) == 2 and ax.get_lines()[0].get_ydata().shape == (11,)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.median(sol.y[:, :, 0], axis=0))
    assert len(sol.plot("paths", paths=5).get_lines()) == 5
    hist = sol.plot("hist", component=1)
    assert sum(p.get_height() for p in hist.patches) > 0
    single = solve(_brownian_model(), "EM", dt=0.01, seed=1, backend="numpy")
    assert len(single.plot().get_lines()) == 1            # one problem: its path
    plt.gcf().savefig(tmp_path / "p.png")
    with pytest.raises(ValueError, match="component must be in"):
        sol.plot(component=5)
    with pytest.raises(ValueError, match="kind must be"):
        sol.plot("violin")
    y = sk.states("y", 1)
    blowup = sk.Ensemble(sk.ODEProblem(sk.ODE(y, sp.Matrix([y[0] ** 2])), [2.0], (0, 1)), y0=[[2.0], [3.0]])
    failed = solve(blowup, "RK4", dt=0.01, saveat="steps", backend="numpy")
    assert list(failed.retcodes) == ["Unstable", "Unstable"]
    for kind in ("quantiles", "hist"):
        with pytest.raises(ValueError, match=r"no trajectory stayed finite \(Unstable: 2\).*sol.plot\('paths'\)"):
            failed.plot(kind)
    assert len(failed.plot("paths").get_lines()) == 2
    plt.close("all")


def test_progress_bar_of_an_adaptive_numpy_solve(capsys):
    """Adaptive (numpy): the bar follows the slowest active lane's time to t1."""
    ens = sk.Ensemble(_brownian_model(), n=20, seed=1)
    loud = solve(ens, "SRA1", rtol=1e-2, atol=1e-2, backend="numpy", progress=True)
    err = capsys.readouterr().err
    assert "100%" in err and "t 1/1" in err
    np.testing.assert_array_equal(loud.y, solve(ens, "SRA1", rtol=1e-2, atol=1e-2, backend="numpy").y)
    assert capsys.readouterr().err == ""
