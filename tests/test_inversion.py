"""Inversion (sdekit.inversion; issue 17): EDICT, BDIA and reversible Heun round trips to rounding
for random networks; DDIM inversion's round-trip error falls at order 1 in NFE (higher-order
samplers' at least at their order); fixed-point inversion reaches its tolerance, Anderson saves
network calls, and a step that does not converge has retcode MaxIters; reversible Heun converges at
order 2 (ODE) and 1 (scalar-noise Stratonovich SDE, commutative) against exact solutions."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdekit as sk
from sdekit.testing import gaussian_flow, observed_order

D = sk.diffusion
SCHEDULE = D.vp_linear()
MIXTURE = D.GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.7, 0.9], [0.4, 0.6])
EPS = MIXTURE.eps(SCHEDULE)
X_T = np.random.default_rng(0).standard_normal((8, 2))


def random_network(seed, d=2, width=16):
    """ε(x, t) = W2 tanh(W1 x + b1 + t c) + b2 with random weights: any network."""
    rng = np.random.default_rng(seed)
    W1, b1, c = rng.standard_normal((d, width)), rng.standard_normal(width), rng.standard_normal(width)
    W2, b2 = rng.standard_normal((width, d)) / np.sqrt(width), rng.standard_normal(d)
    return lambda x, t: np.tanh(x @ W1 + b1 + t * c) @ W2 + b2


def _rms(a):
    return float(np.sqrt(np.mean(np.asarray(a) ** 2)))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), p=st.floats(0.9, 1.0), steps=st.integers(2, 25))
def test_edict_round_trips_to_rounding_for_any_network(seed, p, steps):
    """Within 1e-12 for p >= 0.9 (the paper's 0.93): the inverse divides by p twice a step, so
    rounding grows as p^-2 per step (at p = 0.5 it passes 1e-12 within 7 steps)."""
    net, ts = random_network(seed), D.timesteps(SCHEDULE, steps, t_end=1e-2)
    x, y, nfe = D.edict(SCHEDULE, net, X_T, ts, p=p)
    assert nfe == 2 * steps
    xb, yb, _ = D.edict(SCHEDULE, net, x, ts, p=p, y=y, inverse=True)
    assert np.abs(xb - X_T).max() < 1e-12 and np.abs(yb - X_T).max() < 1e-12
    x2, y2, _ = D.edict(SCHEDULE, net, xb, ts, p=p, y=yb)             # and data -> noise -> data
    assert np.abs(x2 - x).max() < 1e-12 * max(1.0, np.abs(x).max())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), gamma=st.sampled_from([1.0, 0.9, 0.7]), steps=st.integers(2, 30))
def test_bdia_round_trips_to_rounding_for_any_network(seed, gamma, steps):
    """Exact in exact arithmetic; in float64 rounding grows through the two-step recurrence (its
    parasitic mode, a factor of (a_down − a_up) per step at the noisy end of the grid, and 1/γ):
    measured at most 2.3e-11 at γ = 1 and 30 steps over 40 random networks, so the budget is
    1e-10 · γ^-steps."""
    net, ts = random_network(seed), D.timesteps(SCHEDULE, steps, t_end=1e-2)
    z, before, nfe = D.bdia(SCHEDULE, net, X_T, ts, gamma=gamma)
    assert nfe == steps                                               # one call per step
    zb, zb1, _ = D.bdia(SCHEDULE, net, z, ts, gamma=gamma, previous=before, inverse=True)
    scale = 1e-10 / gamma ** steps
    assert np.abs(zb - X_T).max() < scale
    z2, before2, _ = D.bdia(SCHEDULE, net, zb, ts, gamma=gamma, previous=zb1)
    assert np.abs(z2 - z).max() < scale and np.abs(before2 - before).max() < scale


def test_bdia_inverts_data_it_did_not_sample():
    """Real data has no second state: one DDIM inversion step supplies it, and the pair found
    samples back to the data exactly."""
    x0 = MIXTURE.sample(8, np.random.default_rng(1))
    ts = D.timesteps(SCHEDULE, 25, t_end=1e-2)
    zT, z1, _ = D.bdia(SCHEDULE, EPS, x0, ts, inverse=True)
    back, _, _ = D.bdia(SCHEDULE, EPS, zT, ts, previous=z1)
    assert np.abs(back - x0).max() < 1e-12


@pytest.mark.parametrize("method, order", [("ddim", 1), ("dpmsolver-2", 2), ("dpmsolver++2m", 2), ("heun", 2)])
def test_explicit_inversion_round_trip_error_falls_with_nfe(method, order):
    """Sample noise -> data, invert data -> noise: DDIM's round trip falls at order 1 (measured
    0.97); second-order samplers' at least at 2 (measured 3: forward and inverse errors cancel
    to leading order)."""
    steps, errs = [16, 32, 64, 128], []
    for n in steps:
        ts = D.timesteps(SCHEDULE, n, t_end=1e-2)
        x0, _ = D.sample(SCHEDULE, EPS, X_T, ts, method)
        inv = D.invert(SCHEDULE, EPS, x0, ts[::-1], method, check=False)
        assert inv.nfe == n * D.SAMPLERS[method][2] and inv.success
        errs.append(_rms(inv.x - X_T))
    p = observed_order([1.0 / n for n in steps[1:]], errs[1:])
    assert (order - 0.25 <= p <= order + 0.4) if method == "ddim" else p >= order - 0.1, (method, p, errs)


def test_explicit_inversion_with_a_singlestep_warmup_keeps_unipc3_at_order_four():
    """Inverting data (N(μ, 0.3²), its exact flow map) to t = 0.9: the first step sits where x̂ moves, so diffusers'
    warm-up caps UniPC-3 at 3 (measured 3.4, 3.2); warmup="singlestep" (DPM-Solver-3 first) gives 4 (4.1, 4.1) at
    two network calls more."""
    mu, std = np.array([1.5, -0.7]), 0.3
    eps, flow = gaussian_flow(SCHEDULE, mu, std)
    x0 = mu + std * np.random.default_rng(0).standard_normal((16, 2))
    steps, orders = [64, 128, 256], {}
    for warmup in ("lower", "singlestep"):
        errs = []
        for n in steps:
            ts = D.timesteps(SCHEDULE, n, t_start=0.9, t_end=1e-2)[::-1]
            inv = D.invert(SCHEDULE, eps, x0, ts, "unipc3-bh1", check=False, warmup=warmup)
            assert inv.nfe == D.nfe("unipc3-bh1", n, warmup)
            errs.append(np.abs(inv.x - flow(x0, ts[0], ts[-1])).max())
        orders[warmup] = observed_order([1.0 / n for n in steps], errs)
    assert orders["singlestep"] >= 3.8 and orders["lower"] <= 3.6, orders


def test_explicit_inversion_reports_its_residual():
    """The per-step residual is what sampling each step back misses by: it falls as O(h²) per step
    for DDIM (local error), so halving the step quarters it."""
    res = []
    for n in (32, 64):
        ts = D.timesteps(SCHEDULE, n, t_end=1e-2)
        x0, _ = D.sample(SCHEDULE, EPS, X_T, ts, "ddim")
        inv = D.invert(SCHEDULE, EPS, x0, ts[::-1])
        assert inv.residual.shape == (n, 8) and inv.nfe == n
        res.append(inv.residual.max())
    assert 3.0 < res[0] / res[1] < 5.0, res


@pytest.mark.parametrize("method", ["ddim", "dpmsolver-2"])
def test_fixed_point_inversion_reaches_its_tolerance(method):
    """Each step solved to 1e-12: sampling the latent back gives the data to about steps × tol, and
    the residuals are below tol; Anderson acceleration needs fewer network calls than plain."""
    ts = D.timesteps(SCHEDULE, 16, t_end=1e-2)
    x0, _ = D.sample(SCHEDULE, EPS, X_T, ts, method)
    plain = D.invert(SCHEDULE, EPS, x0, ts[::-1], method, solver="fixed-point", tol=1e-12, anderson=0)
    fast = D.invert(SCHEDULE, EPS, x0, ts[::-1], method, solver="fixed-point", tol=1e-12, anderson=3)
    for inv in (plain, fast):
        assert inv.success and inv.retcodes == ["Success"] * 8
        assert inv.residual.max() <= 1e-12
        back, _ = D.sample(SCHEDULE, EPS, inv.x, ts, method)
        assert _rms(back - x0) < 16 * 1e-11
    assert _rms(fast.x - X_T) < 1e-9                                  # the sampled noise itself
    assert fast.nfe < plain.nfe, (fast.nfe, plain.nfe)


@pytest.mark.parametrize("method", ["ddim", "heun"])
def test_newton_inversion_reaches_its_tolerance(method):
    """Newton–Krylov (finite-difference JVPs): residuals below tol, the sampled noise recovered, and
    one Newton iteration is not enough for 1e-14 (MaxIters)."""
    ts = D.timesteps(SCHEDULE, 12, t_end=1e-2)
    x0, _ = D.sample(SCHEDULE, EPS, X_T, ts, method)
    inv = D.invert(SCHEDULE, EPS, x0, ts[::-1], method, solver="newton", tol=1e-12)
    assert inv.success and inv.residual.max() <= 1e-12
    assert _rms(inv.x - X_T) < 1e-9
    short = D.invert(SCHEDULE, EPS, x0, ts[::-1], method, solver="newton", tol=1e-14, maxiter=1)
    assert set(short.retcodes) == {"MaxIters"}


def test_fixed_point_inversion_that_does_not_converge_says_so():
    ts = D.timesteps(SCHEDULE, 8, t_end=1e-2)
    x0, _ = D.sample(SCHEDULE, EPS, X_T, ts, "ddim")
    inv = D.invert(SCHEDULE, EPS, x0, ts[::-1], solver="fixed-point", tol=1e-14, maxiter=2)
    assert not inv.success and set(inv.retcodes) == {"MaxIters"}
    inv = D.invert(SCHEDULE, lambda x, t: np.zeros_like(x), x0, ts[::-1], solver="fixed-point", tol=1e-14, maxiter=3)
    assert inv.success                         # ε = 0: DDIM is linear, its explicit inverse is exact


def test_fixed_point_retcodes_are_per_trajectory():
    """ε = 50x where x_1 > 0, else 0: the iteration diverges on those rows (MaxIters) and converges
    on the others, which are not disturbed by them."""
    ts = D.timesteps(SCHEDULE, 8, t_end=1e-2)
    inv = D.invert(SCHEDULE, lambda x, t: 50.0 * x * (x[:, :1] > 0), X_T, ts[::-1], solver="fixed-point",
                   tol=1e-12, maxiter=30)
    linear = D.invert(SCHEDULE, lambda x, t: 0.0 * x, X_T, ts[::-1])
    calm = X_T[:, 0] <= 0
    assert [r == "Success" for r in inv.retcodes] == list(calm)
    np.testing.assert_allclose(inv.x[calm], linear.x[calm], rtol=1e-12)


def test_inversion_of_torch_tensors_returns_torch_tensors():
    torch = pytest.importorskip("torch", reason="torch is an optional extra")

    def net(x, t):
        return torch.as_tensor(EPS(x.numpy(), t), dtype=x.dtype)
    ts = D.timesteps(SCHEDULE, 8, t_end=1e-2)
    x0 = torch.as_tensor(D.sample(SCHEDULE, EPS, X_T, ts, "ddim")[0])
    inv = D.invert(SCHEDULE, net, x0, ts[::-1], solver="fixed-point", tol=1e-12)
    assert isinstance(inv.x, torch.Tensor) and inv.success
    np.testing.assert_allclose(inv.x.numpy(), X_T, atol=1e-9)
    x, y, _ = D.edict(SCHEDULE, net, torch.as_tensor(X_T), ts)
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)


@pytest.fixture(scope="module")
def flow():
    """The mixture under flow matching (α = 1 − t, σ = t): velocity v = ε − x̂, and a DOP853 reference."""
    import scipy.integrate
    schedule = D.flow_matching()
    eps = MIXTURE.eps(schedule)

    def velocity(x, t):
        e = eps(x, t)
        return e - (x - t * e) / (1 - t)
    ref = scipy.integrate.solve_ivp(lambda t, z: velocity(z.reshape(-1, 2), t).ravel(), (0.999, 1e-3), X_T.ravel(),
                                    method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1].reshape(-1, 2)
    return velocity, ref


@pytest.mark.parametrize("solver, calls", [("rf_solver", lambda n: 2 * n), ("fireflow", lambda n: n + 1)])
def test_rectified_flow_solvers_sample_and_invert_at_order_two(flow, solver, calls):
    """RF-Solver and FireFlow: the sample's error falls at order 2 (measured 1.99, 1.96); the round
    trip sample-then-invert at least at 2 (measured 3); FireFlow calls the network once a step."""
    velocity, ref = flow
    run = getattr(D, solver)
    steps, errs, trips = [16, 32, 64, 128], [], []
    for n in steps:
        ts = np.linspace(0.999, 1e-3, n + 1)
        x, nfe = run(velocity, X_T, ts)
        assert nfe == calls(n)
        errs.append(_rms(x - ref))
        back, _ = run(velocity, x, ts[::-1])
        trips.append(_rms(back - X_T))
    h = [1.0 / n for n in steps[1:]]
    assert 1.75 <= observed_order(h, errs[1:]) <= 2.4, errs
    assert observed_order(h, trips[1:]) >= 1.9, trips


def test_controlled_flow_interpolates_between_the_flow_and_the_reference(flow):
    """RF-Inversion: γ = 0 is the plain flow; γ = 1 is the straight path, which FireFlow integrates
    exactly, so the inverted latent is the reference noise; a γ between moves the latent towards it
    monotonically; γ(t) on a window acts only there."""
    velocity, _ = flow
    x0 = MIXTURE.sample(8, np.random.default_rng(2))
    y1 = np.random.default_rng(3).standard_normal((8, 2))
    ts = np.linspace(1e-3, 0.999, 41)
    plain, _ = D.fireflow(velocity, x0, ts)
    free, _ = D.fireflow(D.controlled(velocity, y1, 1.0, 0.0), x0, ts)
    np.testing.assert_array_equal(free, plain)
    line, _ = D.fireflow(D.controlled(velocity, y1, 1.0, 1.0), x0, ts)
    # the path ends where the straight line from x0 to y1 is at t = 0.999
    want = x0 + (y1 - x0) * (0.999 - 1e-3) / (1.0 - 1e-3)
    np.testing.assert_allclose(line, want, atol=1e-12)
    gaps = [_rms(D.fireflow(D.controlled(velocity, y1, 1.0, g), x0, ts)[0] - want) for g in (0.0, 0.3, 0.6, 0.9)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    window, _ = D.fireflow(D.controlled(velocity, y1, 1.0, lambda t: 0.5 if t > 2.0 else 0.0), x0, ts)
    np.testing.assert_array_equal(window, plain)
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\], got 1.5"):
        D.fireflow(D.controlled(velocity, y1, 1.0, 1.5), x0, ts)


def test_reversible_heun_ode_order_two_and_exact_reversal():
    """y' = −y + sin t, y(0) = 1: y(1) = 1.5e^{−1} + (sin 1 − cos 1)/2."""
    exact = 1.5 * np.exp(-1.0) + 0.5 * (np.sin(1.0) - np.cos(1.0))
    steps, errs = [32, 64, 128, 256], []
    for n in steps:
        ts = np.linspace(0.0, 1.0, n + 1)
        y, z, calls = D.reversible_heun(lambda t, y: -y + np.sin(t), np.ones((1, 1)), ts)
        assert calls == n + 1
        errs.append(abs(y[0, 0] - exact))
        yb, zb, _ = D.reversible_heun(lambda t, y: -y + np.sin(t), y, ts, z=z, inverse=True)
        assert abs(yb[0, 0] - 1) < 1e-13 and abs(zb[0, 0] - 1) < 1e-13
    p = observed_order([1.0 / n for n in steps[1:]], errs[1:])
    assert 1.75 <= p <= 2.4, (p, errs)


def test_reversible_heun_sde_strong_order_and_exact_reversal():
    """Stratonovich GBM dy = a y dt + b y∘dW: y = y0 exp(a t + b W_t).  Scalar noise commutes, so
    Heun's strong order is 1 (measured 1.00); the reversal is exact to rounding on the same path."""
    a, b, n_paths, fine = -0.5, 0.4, 2000, 1024
    W = np.random.default_rng(3).standard_normal((n_paths, fine)) * np.sqrt(1.0 / fine)
    exact = np.exp(a + b * W.sum(1))[:, None]
    steps, errs = [32, 64, 128, 256], []
    for n in steps:
        dW = W.reshape(n_paths, n, -1).sum(-1)
        incs = [dW[:, k:k + 1] for k in range(n)]
        ts = np.linspace(0.0, 1.0, n + 1)
        y, z, _ = D.reversible_heun(lambda t, y: a * y, np.ones((n_paths, 1)), ts, lambda t, y: b * y, incs)
        errs.append(_rms(y - exact))
        yb, zb, _ = D.reversible_heun(lambda t, y: a * y, y, ts, lambda t, y: b * y, incs, z=z, inverse=True)
        assert np.abs(yb - 1).max() < 1e-12 and np.abs(zb - 1).max() < 1e-12
    p = observed_order([1.0 / n for n in steps[1:]], errs[1:])
    assert 0.8 <= p <= 1.25, (p, errs)


def test_reversible_heun_with_a_diffusion_matrix():
    """g (n, d, m) against ΔW (n, m): the same numbers as the diagonal form when the matrix is diagonal."""
    rng = np.random.default_rng(4)
    dW = [rng.standard_normal((5, 2)) * 0.1 for _ in range(10)]
    ts = np.linspace(0.0, 1.0, 11)
    diag, _, _ = D.reversible_heun(lambda t, y: -y, np.ones((5, 2)), ts, lambda t, y: 0.3 * y, dW)
    mat, _, _ = D.reversible_heun(lambda t, y: -y, np.ones((5, 2)), ts,
                                  lambda t, y: 0.3 * y[:, :, None] * np.eye(2), dW)
    np.testing.assert_allclose(mat, diag, rtol=1e-14)


@pytest.mark.parametrize("call, match", [
    (lambda: D.invert(SCHEDULE, EPS, X_T, [0.5, 0.1]), "strictly increasing"),
    (lambda: D.invert(SCHEDULE, EPS, X_T, [0.1, 0.5], "sde-dpmsolver++1"), "deterministic sampler"),
    (lambda: D.invert(SCHEDULE, EPS, X_T, [0.1, 0.5], solver="anderson"), "solver must be one of"),
    (lambda: D.invert(SCHEDULE, EPS, X_T, [0.1, 0.5], "dpmsolver++2m", solver="fixed-point"), "singlestep sampler"),
    (lambda: D.invert(SCHEDULE, EPS, X_T, [0.1, 0.5], tol=0.0), "tol must be"),
    (lambda: D.edict(SCHEDULE, EPS, X_T, [0.5, 0.1], p=0.0), "mixing weight p"),
    (lambda: D.bdia(SCHEDULE, EPS, X_T, [0.5, 0.1], gamma=1.0), "at least three"),
    (lambda: D.reversible_heun(lambda t, y: y, X_T, [0.0, 1.0], g=lambda t, y: y), "both g= and dW="),
    (lambda: D.fireflow(lambda x, t: x, X_T, [0.0, 1.0, 0.5]), "strictly monotone"),
])
def test_bad_inversion_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_inversion_demo_table_figure_and_cli(tmp_path, capsys):
    """``sdekit demo inversion``: a row per method and the figure; the algebraic inversions round
    trip to rounding, DDIM's error halves as NFE doubles, the fixed point reaches its tolerance."""
    from sdekit.cli import main
    from sdekit.demo_inversion import run_inversion_demo
    rows = {r["method"]: r for r in run_inversion_demo(n=300, nfes=(20, 40), out=str(tmp_path / "i.png"), quiet=True)}
    assert (tmp_path / "i.png").stat().st_size > 10_000 and len(rows) == 11
    for name in ("EDICT (p = 0.93)", "BDIA (γ = 1)", "Reversible Heun (PF-ODE)"):
        assert max(rows[name]["noise_data_noise"].values()) < 1e-12
        assert max(rows[name]["data_noise_data"].values()) < 1e-11
    ddim = rows["DDIM inversion"]["noise_data_noise"]
    assert 1.6 < ddim[20] / ddim[40] < 2.6
    assert max(rows["fixed-point DDIM (tol 1e-12)"]["noise_data_noise"].values()) < 1e-10
    assert max(rows["Newton DDIM (tol 1e-12)"]["data_noise_data"].values()) < 1e-10
    for name in ("RF-Solver-2 (RF)", "FireFlow (RF)"):           # second order each way: the trip falls >= 4x
        for way in ("noise_data_noise", "data_noise_data"):
            assert rows[name][way][20] / rows[name][way][40] > 4, (name, way, rows[name][way])
    euler = rows["flow Euler inversion (RF)"]["noise_data_noise"]
    assert 1.6 < euler[20] / euler[40] < 2.6
    assert main(["demo", "inversion", "--n", "100", "--out", str(tmp_path / "cli.png")]) == 0
    assert "EDICT" in capsys.readouterr().out and (tmp_path / "cli.png").exists()


def _mlp(seed=0, sizes=(3, 32, 32, 2), activation="tanh"):
    rng = np.random.default_rng(seed)
    return D.MLPNetwork([(rng.normal(size=(b, a)) / np.sqrt(a), 0.1 * rng.normal(size=b))
                         for a, b in zip(sizes[:-1], sizes[1:])], activation)


@pytest.mark.parametrize("activation", ["tanh", "silu", "softplus"])
def test_mlp_network_tangent_pass_is_its_jacobian(activation):
    """``MLPNetwork.jvp`` (forward mode through the layers) agrees with central differences to 1e-8, and a
    sampler step run on ``Dual(x, v)`` carries the step's own JVP."""
    from sdekit.sampling import Dual, Network, SINGLESTEP
    net = _mlp(activation=activation)
    rng = np.random.default_rng(1)
    x, v = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    out, jv = net.jvp(x, 0.4, v)
    np.testing.assert_array_equal(out, net(x, 0.4))
    fd = (net(x + 1e-6 * v, 0.4) - net(x - 1e-6 * v, 0.4)) / 2e-6
    np.testing.assert_allclose(jv, fd, atol=1e-8)
    step = SINGLESTEP["dpmsolver-2"]
    wrapped = Network(net, "eps", SCHEDULE)
    dual = step(SCHEDULE, wrapped, Dual(x, v), 0.5, 0.3)
    fd = (step(SCHEDULE, wrapped, x + 1e-6 * v, 0.5, 0.3) - step(SCHEDULE, wrapped, x - 1e-6 * v, 0.5, 0.3)) / 2e-6
    np.testing.assert_allclose(dual.value, step(SCHEDULE, wrapped, x, 0.5, 0.3), atol=1e-15)
    np.testing.assert_allclose(dual.tangent, fd, atol=1e-7)


def test_newton_inversion_takes_exact_jvps_from_the_network():
    """Newton inversion of an MLP network's DPM-Solver-2 samples reaches tol 1e-12 with exact JVPs (its
    tangent pass), as with finite differences of a network without ``jvp``, to the same latent; for 2-D states each
    Newton step is exact (the Jacobian blocks from 2 batched JVPs), so both take few calls."""
    net = _mlp()
    ts = D.timesteps(SCHEDULE, 10, t_end=1e-2)
    x0 = D.sample(SCHEDULE, net, X_T, ts, "dpmsolver-2")[0]
    exact = D.invert(SCHEDULE, net, x0, ts[::-1], "dpmsolver-2", solver="newton", tol=1e-12)
    fd = D.invert(SCHEDULE, lambda x, t: net(x, t), x0, ts[::-1], "dpmsolver-2", solver="newton", tol=1e-12)
    assert exact.success and fd.success
    assert np.abs(exact.x - X_T).max() < 1e-10 and np.abs(fd.x - exact.x).max() < 1e-10
    assert exact.nfe < 20 * len(ts) and fd.nfe < 20 * len(ts)
    assert np.abs(exact.residual).max() < 1e-11


def test_mlp_network_bad_input_is_named():
    with pytest.raises(ValueError, match="activation must be"):
        D.MLPNetwork([(np.ones((2, 3)), np.ones(2))], "gelu")
    with pytest.raises(ValueError, match="chain"):
        D.MLPNetwork([(np.ones((4, 3)), np.ones(4)), (np.ones((2, 5)), np.ones(2))])
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        _mlp()(np.ones((3, 3)), 0.1)


def test_newton_inversion_of_a_torch_network_takes_torch_jvps():
    """A torch network (the MLPNetwork's weights as torch layers): Newton inversion's Jacobian-vector products
    come from torch's forward-mode AD (``torch.func.jvp``) through the sampler step, the result is a torch
    tensor, and it is the numpy MLPNetwork's (its own tangent pass) to the tolerance."""
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    net = _mlp()
    layers = [(torch.as_tensor(W), torch.as_tensor(b)) for W, b in net.weights]

    def tnet(x, t):
        h = torch.cat([x, torch.full((x.shape[0], 1), float(t), dtype=x.dtype)], dim=1)
        for k, (W, b) in enumerate(layers):
            h = h @ W.T + b
            h = torch.tanh(h) if k < len(layers) - 1 else h
        return h
    ts = D.timesteps(SCHEDULE, 10, t_end=1e-2)
    x0 = D.sample(SCHEDULE, net, X_T, ts, "dpmsolver-2")[0]
    ref = D.invert(SCHEDULE, net, x0, ts[::-1], "dpmsolver-2", solver="newton", tol=1e-12)
    got = D.invert(SCHEDULE, tnet, torch.as_tensor(x0), ts[::-1], "dpmsolver-2", solver="newton", tol=1e-12)
    assert isinstance(got.x, torch.Tensor) and got.success and got.nfe == ref.nfe
    np.testing.assert_allclose(got.x.numpy(), ref.x, atol=1e-10)


def test_newton_on_a_large_batch_solves_each_trajectory_block():
    """2000 trajectories, finite differences: each Newton step solves every trajectory's 2 × 2 Jacobian block (two
    batched difference quotients), not one GMRES over the 4000 unknowns, so all converge in a few calls a step."""
    x = np.random.default_rng(7).standard_normal((2000, 2))
    ts = D.timesteps(SCHEDULE, 10, t_end=1e-2)
    x0 = D.sample(SCHEDULE, EPS, x, ts, "ddim")[0]
    inv = D.invert(SCHEDULE, EPS, x0, ts[::-1], solver="newton", tol=1e-12)
    assert inv.success and np.abs(inv.x - x).max() < 1e-9 and inv.nfe <= 20 * 10, inv.nfe
