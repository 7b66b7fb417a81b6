"""Diffusion samplers (sdekit.sampling; issue 16): on the probability-flow ODE of a 2-D Gaussian
mixture with its exact noise prediction, each sampler's error at t_end against a DOP853 reference
falls at its order as NFE grows — exact DPM-Solver++(3M) at 3 where the published ("compat") weight
gives 2 (methods.md §1.6); the network is called exactly NFE times; ε, x̂ and v predictions of one
network give one sample; torch tensors come back as torch tensors."""
import numpy as np
import pytest
import scipy.integrate
import sympy as sp

import sdekit as sk
from sdekit.testing import gaussian_flow, observed_order

D = sk.diffusion
SCHEDULE = D.vp_linear()
MIXTURE = D.GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.7, 0.9], [0.4, 0.6])
EPS = MIXTURE.eps(SCHEDULE)
T_END = 1e-2
ORDERS = {"ddim": 1, "dpmsolver-2": 2, "dpmsolver-3": 3, "dpmsolver-2m": 2, "dpmsolver++2s": 2, "dpmsolver++2m": 2, "dpmsolver++3m": 3,
          "dpmsolver++3m-compat": 2, "euler": 1, "heun": 2,
          **{f"unipc{p}-{b}": p + 1 for p in (1, 2, 3) for b in ("bh1", "bh2")},   # UniP-p + UniC: order p + 1
          "deis1": 1, "deis2": 2, "deis3": 3, "flow-euler": 1,
          "pndm": 2, "ipndm": 2, "rf-solver-2": 2, "fireflow": 2}     # Adams–Bashforth 4 weights on a grid not uniform in ρ = σ/α: order 2


@pytest.fixture(scope="module")
def problem():
    x_T = np.random.default_rng(0).standard_normal((16, 2))
    s = SCHEDULE

    def rhs(t, z):           # dx/dt = f x + g²/(2σ) ε (methods.md §2.1)
        x = z.reshape(-1, 2)
        return (float(s("f", t)) * x + float(s("g2", t)) / (2 * float(s("sigma", t))) * EPS(x, t)).ravel()
    ref = scipy.integrate.solve_ivp(rhs, (1.0, T_END), x_T.ravel(), method="DOP853", rtol=1e-13, atol=1e-13)
    return x_T, ref.y[:, -1].reshape(-1, 2)


def test_every_sampler_has_an_order():
    """Every deterministic sampler is in the order test; the SDE ones in the marginal test below."""
    assert set(ORDERS) | set(D.STOCHASTIC) == set(D.SAMPLERS) and all(D.SAMPLERS[m][1] == p for m, p in ORDERS.items())


def _reverse_sde_variance_error(method, steps, n=20000):
    """Data N(μ, 0.6² I) with its exact ε: relative error of the sample variance at t_end = 0.05
    against the exact marginal's α² s² + σ², and the mean's error."""
    data = D.GaussianMixture([[0.5, -1.0]], [0.6])
    rng = np.random.default_rng(3)
    x, nfe = D.sample(SCHEDULE, data.eps(SCHEDULE), rng.standard_normal((n, 2)),
                      D.timesteps(SCHEDULE, steps, t_end=0.05), method, noise=rng.standard_normal((steps, n, 2)))
    assert nfe == steps
    a, s = float(SCHEDULE("alpha", 0.05)), float(SCHEDULE("sigma", 0.05))
    var = a**2 * 0.36 + s**2
    return np.abs(x.var(axis=0) / var - 1).max(), np.abs(x.mean(axis=0) - a * np.array([0.5, -1.0])).max(), var


def test_sde_dpmsolver_1_has_weak_order_one_in_the_variance():
    """2·10^4 samples resolve the variance to ~1 %; the first-order SDE sampler's error (20 % at 30
    steps) halves with each doubling of the steps."""
    errs = [_reverse_sde_variance_error("sde-dpmsolver++1", k)[0] for k in (30, 60, 120)]
    p = observed_order([1 / 30, 1 / 60, 1 / 120], errs)
    assert 0.75 <= p <= 1.35, (p, errs)


def test_sde_dpmsolver_2m_reaches_the_marginal_of_the_data():
    """At 60 steps the 2M sampler's mean and variance are within 5 standard errors (+1 %) of the exact marginal."""
    var_err, mean_err, var = _reverse_sde_variance_error("sde-dpmsolver++2m", 60)
    n = 20000
    assert var_err < 5 * np.sqrt(2 / n) + 0.01 and mean_err < 5 * np.sqrt(var / n), (var_err, mean_err)


@pytest.mark.parametrize("method, steps, order", [("sde-dpmsolver++2m", (4, 8, 16), 1.5),
                                                 ("sde-dpmsolver++3m", (8, 16, 32), 2.0)])
def test_higher_order_sde_samplers_weak_order_in_the_variance(method, steps, order):
    """Weak order on moments: with 4·10^5 samples (standard error of the variance ~0.2 %), the relative error of
    the variance of 2M (46 %, 14 %, 0.7 % at 4, 8, 16 steps) and exact 3M falls faster than first order."""
    errs = [_reverse_sde_variance_error(method, k, n=400_000)[0] for k in steps]
    p = observed_order([1 / k for k in steps], errs)
    assert p >= order, (method, p, errs)


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_sampler_converges_at_its_order(problem, method):
    x_T, ref = problem
    steps, errs = [16, 32, 64, 128], []
    for n in steps:
        x, nfe = D.sample(SCHEDULE, EPS, x_T, D.timesteps(SCHEDULE, n, t_end=T_END), method)
        assert nfe == D.nfe(method, n)                          # exactly the calls it promises
        errs.append(np.sqrt(np.mean((x - ref) ** 2)))
    p = observed_order([1.0 / n for n in steps[1:]], errs[1:])
    print(method, "order", p, errs)
    assert ORDERS[method] - 0.25 <= p <= ORDERS[method] + 0.4, (method, p, errs)


@pytest.mark.parametrize("method, steps", [("dpmsolver++3m", (128, 256, 512)), ("deis3", (128, 256, 512)),
                                           ("unipc3-bh1", (32, 64, 128))])
def test_a_singlestep_warmup_keeps_the_listed_order_where_the_first_step_matters(method, steps):
    """Started at t = 0.3 (x̂ moves from the first step; from t = 1, α ≈ 0.006 hides it), diffusers' warm-up caps
    3M and DEIS-3 at order 2 and UniPC-3 at 3: a first step of local error O(h^k) stays O(h^k) in the global error.
    warmup="singlestep" (DPM-Solver++(2S), DPM-Solver-2, DPM-Solver-3 first) gives the listed order at one or two
    network calls more."""
    eps, flow = gaussian_flow(SCHEDULE, [1.5, -0.7], 0.3)
    x_T = np.random.default_rng(0).standard_normal((16, 2))
    orders, last = {}, {}
    for warmup in ("lower", "singlestep"):
        errs = []
        for n in steps:
            ts = D.timesteps(SCHEDULE, n, t_start=0.3, t_end=T_END)
            x, nfe = D.sample(SCHEDULE, eps, x_T, ts, method, warmup=warmup)
            assert nfe == D.nfe(method, n, warmup) == n + (D.START_CALLS[method] - 1 if warmup == "singlestep" else 0)
            errs.append(np.abs(x - flow(x_T, ts[0], ts[-1])).max())
        orders[warmup], last[warmup] = observed_order([1.0 / n for n in steps], errs), errs[-1]
    listed = D.SAMPLERS[method][1]
    assert orders["singlestep"] >= listed - 0.2 and orders["lower"] <= listed - 0.5, (method, orders)
    assert last["singlestep"] < last["lower"] / 5, (method, last)


def test_deis_weights_keep_their_digits_at_small_steps():
    """DEIS's weights as φ-sums (sampling._deis_weights): at 1024 → 2048 steps DEIS-3's error still falls eightfold
    (as differences of sympy's antiderivatives it rose, 1.8e-10 → 4.7e-9, their digits lost to cancellation)."""
    eps, flow = gaussian_flow(SCHEDULE, [1.5, -0.7], 0.3)
    x_T = np.random.default_rng(0).standard_normal((16, 2))
    errs = []
    for n in (1024, 2048):
        ts = D.timesteps(SCHEDULE, n, t_start=0.3, t_end=T_END)
        errs.append(np.abs(D.sample(SCHEDULE, eps, x_T, ts, "deis3", warmup="singlestep")[0] - flow(x_T, ts[0], ts[-1])).max())
    assert errs[1] < errs[0] / 6 and errs[1] < 1e-10, errs


def _as(prediction):
    """The mixture's exact network as an x̂ or v prediction (converted by hand)."""
    s = SCHEDULE

    def model(x, t):
        a, sg = float(s("alpha", t)), float(s("sigma", t))
        e = EPS(x, t)
        x0 = (x - sg * e) / a
        return x0 if prediction == "x0" else e - x0 if prediction == "flow" else a * e - sg * x0
    return model


@pytest.mark.parametrize("method", ["ddim", "dpmsolver-2", "dpmsolver++3m", "flow-euler"])
@pytest.mark.parametrize("prediction", ["x0", "v", "flow"])
def test_every_prediction_gives_the_same_sample(problem, method, prediction):
    x_T, _ = problem
    ts = D.timesteps(SCHEDULE, 12, t_end=T_END)
    want, _ = D.sample(SCHEDULE, EPS, x_T, ts, method)
    got, _ = D.sample(SCHEDULE, _as(prediction), x_T, ts, method, prediction=prediction)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_torch_tensors_come_back_as_torch_tensors(problem):
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    x_T, _ = problem
    ts = D.timesteps(SCHEDULE, 10, t_end=T_END)
    net = lambda x, t: torch.as_tensor(EPS(x.numpy(), t), dtype=x.dtype)  # noqa: E731
    got, nfe = D.sample(SCHEDULE, net, torch.as_tensor(x_T), ts, "dpmsolver++2m")
    want, _ = D.sample(SCHEDULE, EPS, x_T, ts, "dpmsolver++2m")
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and nfe == 10
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)


def test_timesteps():
    ts = D.timesteps(SCHEDULE, 10)
    assert ts[0] == SCHEDULE.t_range[1] and ts[-1] == SCHEDULE.t_range[0] and np.all(np.diff(ts) < 0)
    np.testing.assert_allclose(np.diff(SCHEDULE("lam", ts)), np.diff(SCHEDULE("lam", ts))[0], rtol=1e-9)
    np.testing.assert_allclose(np.diff(D.timesteps(SCHEDULE, 4, "time_uniform")), -(1.0 - 1e-3) / 4)
    np.testing.assert_allclose(np.diff(np.sqrt(D.timesteps(SCHEDULE, 4, "time_quadratic"))),
                               -(1.0 - np.sqrt(1e-3)) / 4)
    for rho in (7.0, 3.0):     # Karras: uniform in σ̃^{1/ρ}, σ̃ = σ/α = e^{−λ}, between the schedule's ends
        ts = D.timesteps(SCHEDULE, 6, "karras", rho=rho)
        root = np.exp(-SCHEDULE("lam", ts) / rho)
        assert ts[0] == SCHEDULE.t_range[1] and ts[-1] == SCHEDULE.t_range[0]
        np.testing.assert_allclose(np.diff(root), np.diff(root)[0], rtol=1e-9)


@pytest.mark.parametrize("call, match", [
    (lambda: D.sample(SCHEDULE, EPS, np.zeros((1, 2)), [1.0, 0.1], "unipc9"), "unknown sampler"),
    (lambda: D.sample(SCHEDULE, lambda x, t: EPS(x, t)[:, :1], np.zeros((4, 2)), [1.0, 0.1], "ddim"),
     r"the network returned an output of shape \(4, 1\) for x of shape \(4, 2\)"),
    (lambda: D.sample(SCHEDULE, lambda x, t: 0.5, np.zeros((4, 2)), [1.0, 0.1], "ddim"), r"output of shape \(\)"),
    (lambda: D.sample(SCHEDULE, EPS, np.zeros((4, 2)), [1.0, 0.5, 0.1], "sde-dpmsolver++2m", noise=np.zeros((2, 1, 2))),
     r"noise must hold 2 arrays of x's shape \(4, 2\) \(one per step\), got 2 of shape \(1, 2\)"),
    (lambda: D.sample(SCHEDULE, EPS, np.zeros((4, 2)), [1.0, 0.5, 0.1], "sde-dpmsolver++2m", noise=np.zeros((1, 4, 2))),
     "noise must hold 2 arrays"),

    (lambda: D.sample(SCHEDULE, EPS, np.zeros((1, 2)), [0.1, 1.0], "ddim"), "strictly decreasing"),
    (lambda: D.sample(SCHEDULE, EPS, np.zeros((1, 2)), [1.0, 0.1], "ddim", prediction="score"), "prediction must be"),
    (lambda: D.timesteps(SCHEDULE, 10, "karas"), "spacing must be"),
    (lambda: D.timesteps(SCHEDULE, 10, "karras", rho=0.0), "rho must be positive"),
    (lambda: D.sample(SCHEDULE, EPS, np.zeros((1, 2)), [1.0, 0.1], "sde-dpmsolver++2m"), "needs noise="),
    (lambda: D.sample(SCHEDULE, EPS, np.zeros((1, 2)), [1.0, 0.1], "ddim", noise=[np.zeros((1, 2))]), "takes no noise"),
    (lambda: D.timesteps(SCHEDULE, 0), "integer >= 1"),
    (lambda: D.timesteps(SCHEDULE, 10, "trailing"), "discrete schedule"),
    (lambda: D.sample(D.flow_matching(t_range=(1e-3, 1.0)), EPS, np.zeros((1, 2)), [1.0, 0.1], "ddim"),
     "α = 0 or σ = 0 at t = 1"),

    (lambda: D.sample(SCHEDULE, EPS, np.zeros((1, 2)), [1.0, 0.1], "heun", eta=0.5), "eta is DDIM's"),
    (lambda: D.sample(SCHEDULE, EPS, np.zeros((1, 2)), [1.0, 0.1], "ddim", eta=0.5), "with eta > 0 needs noise="),
    (lambda: D.timesteps(D.DiscreteVP.scaled_linear(), 10, "leading", t_end=0.1), "no t_start/t_end"),
    (lambda: D.timesteps(D.DiscreteVP.scaled_linear(), 1000, "linspace"), "fewer than"),
    (lambda: D.GaussianMixture([[0, 0]], [-1.0]), "positive weight and std"),
    (lambda: D.sample(SCHEDULE, EPS, np.zeros((1, 2)), [1.0, 0.1], "ddim", warmup="rk"), "warmup must be one of"),
    (lambda: D.nfe("deis3", 10, "rk"), "warmup must be one of"),
])
def test_bad_sampler_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_diffusion_demo_table_figure_and_cli(tmp_path, capsys):
    """``sdekit demo diffusion``: a row per sampler, the figure written, and at 50 calls the best
    samplers within twice the measurement's own error (the SW2 between two exact sample sets)."""
    from sdekit.cli import main
    from sdekit.demo_diffusion import RING, run_diffusion_demo, sliced_wasserstein
    rows = run_diffusion_demo(n=2000, nfes=(6, 50), out=str(tmp_path / "d.png"), quiet=True)
    assert [r["sampler"] for r in rows] == list(D.SAMPLERS) and (tmp_path / "d.png").stat().st_size > 10_000
    rng = np.random.default_rng(0)
    data = D.GaussianMixture(RING, 0.25)
    floor = sliced_wasserstein(data.sample(2000, rng), data.sample(2000, rng))
    assert min(r["sw2"][50] for r in rows) < 2 * floor
    assert all(r["nfe_used"][50] <= 50 for r in rows)
    assert main(["demo", "diffusion", "--n", "500", "--out", str(tmp_path / "cli.png")]) == 0
    assert "dpmsolver++3m" in capsys.readouterr().out and (tmp_path / "cli.png").exists()


def test_sde_dpmsolver_3m_mean_order_exact_vs_compat():
    """methods.md §2.5: with a network whose x̂ does not depend on x, the mean of every SDE sampler is the
    sampler run with z = 0, and the exact mean is α_T-weighted ∫ 2e^{−2(λ_e − λ)} x̂ dλ (quadrature).  The
    exact 3M weight gives mean order ≈ 3, diffusers' ("-compat") ≈ 1, 2M 2."""
    g = lambda lam: np.tanh(0.5 * lam) + 0.3 * np.sin(lam)          # noqa: E731
    model = lambda x, t: np.broadcast_to(g(float(SCHEDULE("lam", t))), x.shape)   # noqa: E731
    x_T, t_end = np.array([[0.7, -0.3]]), 1e-2
    (l0, l1), (s0, s1), a1 = SCHEDULE("lam", [1.0, t_end]), SCHEDULE("sigma", [1.0, t_end]), float(SCHEDULE("alpha", t_end))
    integral = scipy.integrate.quad(lambda lam: 2 * np.exp(-2 * (l1 - lam)) * g(lam), l0, l1, epsabs=1e-15, limit=400)[0]
    exact = (s1 / s0) * np.exp(-(l1 - l0)) * x_T + a1 * integral
    steps = [16, 32, 64, 128]
    orders = {}
    for method in ("sde-dpmsolver++2m", "sde-dpmsolver++3m", "sde-dpmsolver++3m-compat"):
        errs = [np.abs(D.sample(SCHEDULE, model, x_T, D.timesteps(SCHEDULE, n, t_end=t_end), method, prediction="x0",
                                noise=lambda i: 0.0 * x_T)[0] - exact).max() for n in steps]
        orders[method] = observed_order([1.0 / n for n in steps[1:]], errs[1:])
    assert 1.8 <= orders["sde-dpmsolver++2m"] <= 2.4, orders
    assert orders["sde-dpmsolver++3m"] >= 2.7, orders
    assert orders["sde-dpmsolver++3m-compat"] <= 1.7, orders


@pytest.mark.parametrize("method", sorted(D.SAMPLERS))
def test_every_sampler_reaches_sigma_zero(method):
    """A grid that ends at σ = 0 (flow matching's t = 0): every sampler returns a finite sample there, with
    one network call per step of its promise (the last step x = x̂ costs one call)."""
    flow = D.flow_matching()
    eps = MIXTURE.eps(flow)
    x = np.random.default_rng(0).standard_normal((4, 2))
    noise = np.random.default_rng(1).standard_normal((10, 4, 2)) if method in D.STOCHASTIC else None
    y, nfe = D.sample(flow, eps, x, np.linspace(0.999, 0.0, 11), method, noise=noise)
    in_flow = method in ("euler", "flow-euler", "rf-solver-2", "fireflow")     # σ = 0 is a point of their variable
    assert np.all(np.isfinite(y)) and nfe == (D.nfe(method, 10) if in_flow else D.nfe(method, 9) + 1)


def test_trailing_spacing_has_exactly_n_steps():
    """diffusers' float arange can add a step at timestep −1 (n = 61, 103, ...); sdekit's has n (n − 1 when
    the spacing's last timestep is 0 already, n = 998: diffusers' last step there is empty)."""
    schedule = D.DiscreteVP.scaled_linear()
    for n in (61, 103, 998):
        ts = D.timesteps(schedule, n, "trailing")
        assert ts.size == (n if n == 998 else n + 1) and np.all(np.diff(ts) < 0) and ts[-1] == 1.0 / 1000


@pytest.mark.parametrize("method", sorted(D.SAMPLERS))
def test_fused_updates_give_the_eager_samples(method):
    """Batches of at least ``FUSE_MIN_SIZE`` numbers take each step's update as one fused pass
    (``kernels.lincomb``): the same sample as eager arithmetic to rounding, in the caller's type (numpy
    float64 here, torch float32 below), with the network called as often."""
    import sdekit.sampling as S
    x = np.random.default_rng(4).standard_normal((S.FUSE_MIN_SIZE // 2, 2))
    noise = np.random.default_rng(5).standard_normal((6,) + x.shape) if method in D.STOCHASTIC else None
    ts = D.timesteps(SCHEDULE, 6, t_end=T_END)
    fused, nfe = D.sample(SCHEDULE, EPS, x, ts, method, noise=noise)
    old = S.FUSE_MIN_SIZE
    try:
        S.FUSE_MIN_SIZE = 1 << 62
        eager, nfe_eager = D.sample(SCHEDULE, EPS, x, ts, method, noise=noise)
    finally:
        S.FUSE_MIN_SIZE = old
    assert isinstance(fused, np.ndarray) and fused.dtype == np.float64 and nfe == nfe_eager
    np.testing.assert_allclose(fused, eager, rtol=1e-11, atol=1e-11)


def test_fused_updates_keep_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.randn(256, 512, generator=torch.Generator().manual_seed(0))
    net = lambda y, t: 0.1 * y      # noqa: E731
    ts = D.timesteps(SCHEDULE, 5, t_end=T_END)
    out, nfe = D.sample(SCHEDULE, net, x, ts, "dpmsolver++3m")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and nfe == 5
    ref, _ = D.sample(SCHEDULE, lambda y, t: 0.1 * y, x.double().numpy()[:4], ts, "dpmsolver++3m")   # eager, float64
    np.testing.assert_allclose(out.numpy()[:4], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method, solver", [("rf-solver-2", "rf_solver"), ("fireflow", "fireflow")])
def test_rectified_flow_samplers_are_the_inversion_steps(method, solver):
    """On a flow-matching schedule (α = 1 − t, σ = t) the straightened flow is the rectified flow itself:
    the samplers are sdekit.inversion's RF-Solver-2 / FireFlow on the velocity, to rounding (the midpoint
    times pass through the schedule's t(λ))."""
    flow = D.flow_matching()
    eps = MIXTURE.eps(flow)

    def velocity(x, t):
        a, s = 1.0 - t, t
        x0 = (x - s * eps(x, t)) / a
        return eps(x, t) - x0
    x = np.random.default_rng(2).standard_normal((8, 2))
    ts = np.linspace(0.99, 0.02, 15)
    got, nfe = D.sample(flow, velocity, x, ts, method, prediction="flow")
    want, calls = getattr(D, solver)(velocity, x, ts)
    assert nfe == calls == D.nfe(method, 14)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method, order", [("dpmsolver++2m", 2), ("unipc2-bh2", 3)])
def test_mr_sampler_converges_on_a_mean_reverting_sde(method, order):
    """The MR Sampler (``mean=`` μ): an IR-SDE dx = θ_t (μ − x) dt + σ_t dW reduces to a VP-type process in
    z = x − μ (methods.md §2.7), so the samplers keep their order on its probability-flow ODE in x
    (reference: DOP853 at 1e-13 on dx/dt = f (x − μ) + g²/(2σ) ε)."""
    mr = D.mean_reverting(1 + sk.t, sp.Rational(1, 2))
    mu = np.array([0.7, -0.3])
    eps_z = D.GaussianMixture([[-0.4, 0.1], [0.5, 0.3]], [0.2, 0.3]).eps(mr)     # the data in z = x − μ

    def model(x, t):
        return eps_z(x - mu, t)

    def rhs(t, y):
        x = y.reshape(-1, 2)
        return (float(mr("f", t)) * (x - mu) + float(mr("g2", t)) / (2 * float(mr("sigma", t))) * model(x, t)).ravel()
    x_T = mu + 0.5 * np.random.default_rng(4).standard_normal((8, 2))
    t_end = 0.05
    ref = scipy.integrate.solve_ivp(rhs, (1.0, t_end), x_T.ravel(), method="DOP853", rtol=1e-13,
                                    atol=1e-13).y[:, -1].reshape(-1, 2)
    steps, errs = [16, 32, 64, 128], []
    for n in steps:
        x, nfe = D.sample(mr, model, x_T, D.timesteps(mr, n, t_start=1.0, t_end=t_end), method, mean=mu)
        assert nfe == D.nfe(method, n)
        errs.append(np.sqrt(np.mean((x - ref) ** 2)))
    p = observed_order([1.0 / n for n in steps[1:]], errs[1:])
    assert order - 0.25 <= p <= order + 0.5, (method, p, errs)


@pytest.fixture
def untraced(monkeypatch):
    """sample() running every recipe step by step (sdekit.sampling.TRACE off), for comparison."""
    from sdekit import sampling

    def run(*args, **kwargs):
        monkeypatch.setattr(sampling, "TRACE", False)
        try:
            return D.sample(*args, **kwargs)
        finally:
            monkeypatch.setattr(sampling, "TRACE", True)
    return run


@pytest.mark.parametrize("method", sorted(D.SAMPLERS))
def test_a_replayed_step_program_is_the_recipe(untraced, method):
    """sample() records each run's step program once (sdekit.traced) and replays it: the recipe's samples and call
    count for every sampler, with guidance, DDIM's η and the MR Sampler's mean too."""
    x = np.random.default_rng(2).standard_normal((16, 2))
    ts = D.timesteps(SCHEDULE, 7, t_end=T_END)
    noise = np.random.default_rng(3).standard_normal((7, 16, 2)) if method in D.STOCHASTIC else None
    runs = [dict()]
    if method == "dpmsolver++2m":
        runs += [dict(uncond=lambda z, t: 0.5 * EPS(z, t), guidance_scale=2.5), dict(mean=np.array([0.3, -0.1]))]
    if method == "ddim":
        runs += [dict(eta=0.7)]
    for kw in runs:
        z = noise if noise is not None or kw.get("eta") else None
        if kw.get("eta"):
            z = np.random.default_rng(4).standard_normal((7, 16, 2))
        got, calls = D.sample(SCHEDULE, EPS, x, ts, method, noise=z, **kw)
        again, _ = D.sample(SCHEDULE, EPS, x, ts, method, noise=z, **kw)            # the kept program
        want, want_calls = untraced(SCHEDULE, EPS, x, ts, method, noise=z, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
        assert calls == want_calls and np.array_equal(got, again)


def test_step_programs_are_kept_per_run_and_untraceable_recipes_run_as_they_are():
    from sdekit import traced
    x = np.random.default_rng(2).standard_normal((4, 2))
    ts = D.timesteps(SCHEDULE, 5, t_end=T_END)
    D.sample(SCHEDULE, EPS, x, ts, "unipc2-bh2")
    before = len(traced._programs)
    D.sample(SCHEDULE, EPS, 2 * x, ts, "unipc2-bh2")                     # same run, other data: no new program
    assert len(traced._programs) == before
    prog = traced.Program()
    with pytest.raises(traced.Untraceable):
        traced.Token(prog, 0) * traced.Token(prog, 0)                 # a product of arrays is not a combination
    with pytest.raises(traced.Untraceable):
        traced.Token(prog, 0).reshape(2, -1)
    thresholded, _ = D.sample(SCHEDULE, EPS, x, ts, "ddim", thresholding=0.9)     # quantiles: run step by step
    assert thresholded.shape == x.shape and np.all(np.isfinite(thresholded))


def test_a_guidance_scale_is_keyed_by_its_value():
    """The traced program bakes the guidance scale into its coefficients: a 0-d array or a tensor scale is read as
    its value (a tensor changed in place gives a new program, not the old one's result)."""
    torch = pytest.importorskip("torch", reason="the scale of this test is a torch tensor")
    x = np.random.default_rng(0).standard_normal((4, 2))
    ts = D.timesteps(SCHEDULE, 6, t_end=T_END)

    def unc(z, t):
        return 0.5 * EPS(z, t)
    plain = D.sample(SCHEDULE, EPS, x, ts, "ddim", uncond=unc, guidance_scale=2.0)[0]
    np.testing.assert_array_equal(D.sample(SCHEDULE, EPS, x, ts, "ddim", uncond=unc, guidance_scale=np.array(2.0))[0],
                                  plain)
    g = torch.tensor(2.0)
    D.sample(SCHEDULE, EPS, x, ts, "ddim", uncond=unc, guidance_scale=g)
    g.fill_(5.0)
    np.testing.assert_array_equal(D.sample(SCHEDULE, EPS, x, ts, "ddim", uncond=unc, guidance_scale=g)[0],
                                  D.sample(SCHEDULE, EPS, x, ts, "ddim", uncond=unc, guidance_scale=5.0)[0])
