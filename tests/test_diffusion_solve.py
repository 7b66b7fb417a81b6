"""Diffusion models as sdekit models and the samplers through ``solve`` (issue 16; sdekit.diffusion_models).

The probability-flow ODE and reverse SDE of a schedule are built from sympy (f, g², and the exact
conversion of the network's prediction); two independent checks tie them to the samplers: the samplers
through ``solve`` converge, at their orders, to the catalogue's Tsit5 on the Numba kernel of the same
model (its network compiled into the kernel), and the SDE samplers, reading their noise from the
problem's Brownian tree, converge strongly to SRA1 on the same Brownian path.  An ``sk.MLP`` and an
``sk.External`` torch network give ``sk.diffusion.sample``'s samples with the promised number of calls.
"""
import numpy as np
import pytest
import sympy as sp

import sdekit as sk
from sdekit.testing import observed_order

D = sk.diffusion
SCHEDULE = D.vp_linear()
MIXTURE = D.GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.7, 0.9], [0.4, 0.6])
X = sk.states("x", 2)
T_END = 1e-2


def _mlp_weights(seed=0, hidden=16):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(hidden, 3)) / 3, 0.1 * rng.normal(size=hidden)),
            (rng.normal(size=(2, hidden)) / 8, 0.1 * rng.normal(size=2))]


def _mlp_problem(ensemble=True):
    net = sk.MLP("eps", [3, 16, 2])
    model = D.probability_flow(SCHEDULE, X, net(sp.Matrix([*X, sk.t])))
    prob = sk.ODEProblem(model, [0.3, -0.2], (1.0, T_END), nets={"eps": _mlp_weights()})
    y0 = np.random.default_rng(1).standard_normal((6, 2))
    return (sk.Ensemble(prob, y0=y0) if ensemble else prob), y0


def test_the_closed_form_network_is_the_mixture_score():
    f = sp.lambdify([*X, sk.t], MIXTURE.eps_expression(SCHEDULE, X))
    x = 3 * np.random.default_rng(0).standard_normal((8, 2))
    for t in (0.01, 0.3, 1.0):
        ours = np.array([np.ravel(f(*row, t)) for row in x], dtype=float)
        assert np.allclose(ours, MIXTURE.eps(SCHEDULE)(x, t), rtol=1e-12, atol=1e-14)


#: every sampler by its solve name (EDM's Euler/Heun as "edm-euler"/"edm-heun"; "Euler"/"Heun" are the catalogue's)
SOLVE_NAMES = {"euler": "edm-euler", "heun": "edm-heun"}
DETERMINISTIC = [SOLVE_NAMES.get(m, m) for m in D.SAMPLERS if m not in D.STOCHASTIC]


@pytest.mark.parametrize("method", DETERMINISTIC)
def test_every_sampler_through_solve_is_sample_on_the_models_network(method):
    """solve(problem, sampler, ts=...) with an sk.MLP: sk.diffusion.sample's result with the same weights (sdekit.nets
    .MLPNetwork), and stats['nf'] the sampler's NFE."""
    ens, y0 = _mlp_problem()
    ts = D.timesteps(SCHEDULE, 8, t_end=T_END)
    sol = sk.solve(ens, method, ts=ts)
    name = {v: k for k, v in SOLVE_NAMES.items()}.get(method, method)
    want, nfe = D.sample(SCHEDULE, D.MLPNetwork(_mlp_weights()), y0, ts, name)
    assert sol.success and sol.y.shape == (6, 2, 2) and np.array_equal(sol.t, [1.0, T_END])
    assert np.array_equal(sol.y[:, 0], y0)
    np.testing.assert_allclose(sol.y[:, -1], want, rtol=1e-12, atol=1e-12)
    assert sol.stats["nf"] == nfe == D.nfe(name, 8) and sol.stats["naccept"] == 8


def test_a_negative_eta_is_named():
    ens, _ = _mlp_problem()
    with pytest.raises(ValueError, match=r"eta is DDIM's noise level, a number >= 0; got eta=-1"):
        sk.solve(ens, "ddim", ts=D.timesteps(SCHEDULE, 4, t_end=T_END), eta=-1)


def test_a_solve_or_timesteps_past_the_schedules_range_warns():
    """VP-cosine's α reaches 0 at t = 1, past its t_range's 0.9946: a solve from t = 1 returned 1e32 marked Success
    (the exact solution of this model stays at its y0) without a word; now it warns, saying how to widen the range
    of a schedule that holds further (EDM from σ = 100).  From the top of the range it is exact."""
    import warnings
    S = D.vp_cosine()
    x = sk.states("x", 1)
    model = D.probability_flow(S, x, S.sigma * sp.Matrix(x))     # ε of N(0, 1) data: x stays where it is
    for call, what in [(lambda: sk.solve(sk.ODEProblem(model, [1.0], (1.0, 1e-3)), "ETDRK4", dt=1e-2,
                                         backend="numpy"), "tspan"),
                       (lambda: D.timesteps(S, 20, t_start=1.0), "timesteps"),
                       (lambda: D.sample(S, lambda v, t: v, np.ones((2, 1)), [1.0, 0.5], "ddim"), "ts")]:
        with pytest.warns(UserWarning, match=rf"{what} starts at t = 1, past the top of the schedule VP-cosine's "
                                             r"t_range .* or build the schedule with a wider t_range="):
            call()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol = sk.solve(sk.ODEProblem(model, [1.0], (S.t_range[1], 1e-3)), "ETDRK4", dt=1e-2, backend="numpy")
        D.timesteps(D.edm(t_range=(2e-3, 100.0)), 10, "karras", t_start=100.0)
    np.testing.assert_allclose(sol.y[-1], [1.0], rtol=1e-12)
    for constant in (D.vp(sp.Integer(2)), D.mean_reverting(2.0, 0.5)):     # f constant: L = f·I, no time change
        assert D.probability_flow(constant, x, sp.Matrix([sp.tanh(x[0])])).form.linear_time is None


def test_flow_matching_with_a_shift_keeps_its_exact_linear_part():
    """flow_matching(shift=3) (SD3): f(t) = 3/((t − 1)(2t + 1)); sympy's antiderivative has two logs, each needing
    its sign for a real inverse on (0, 1) — found now (the solve said "no closed-form inverse").  ETDRK4 at 100
    steps agrees with Tsit5 at tight tolerance."""
    x = sk.states("x", 2)
    model = D.probability_flow(D.flow_matching(shift=3), x, sp.Matrix([sp.tanh(x[1]) / 2, sp.sin(x[0]) / 2]),
                               prediction="flow")
    assert model.form.linear_time is not None
    prob = sk.ODEProblem(model, [1.0, -1.0], (0.999, 1e-3))
    exact = sk.solve(prob, "ETDRK4", dt=0.999 / 100, backend="numpy").y[-1]
    ref = sk.solve(prob, "Tsit5", rtol=1e-10, atol=1e-12, backend="numpy").y[-1]
    np.testing.assert_allclose(exact, ref, rtol=1e-6)


def test_design_md_names_are_the_samplers_and_sk_methods_lists_them():
    """DESIGN.md's spellings (DPMSolver1/2/3, SDEDPMSolver++2M, UniPC; case-insensitive) solve as the samplers they
    name — DPM-Solver-1 is DDIM's update, UniPC diffusers' default (order 2, bh2) — and sk.methods() lists every
    sampler after the catalogue, with those names as its aliases."""
    from sdekit.diffusion_models import sampler_name
    from sdekit.sampling import ALIASES
    ens, _ = _mlp_problem()
    ts = D.timesteps(SCHEDULE, 6, t_end=T_END)
    for alias, name in [("DPMSolver1", "ddim"), ("dpmsolver2", "dpmsolver-2"), ("UniPC", "unipc2-bh2")]:
        assert sampler_name(alias) == name
        np.testing.assert_array_equal(sk.solve(ens, alias, ts=ts).y, sk.solve(ens, name, ts=ts).y)
    assert sampler_name("SDEDPMSolver++2M") == "sde-dpmsolver++2m"
    rows = {r["name"]: r for r in sk.methods() if r["family"] == "diffusion sampler"}
    assert {sampler_name(n) for n in rows} == set(D.SAMPLERS) and rows["unipc2-bh2"]["aliases"] == ["unipc"]
    assert "edm-euler" in rows and "euler" not in rows          # solve's "Euler" is the catalogue's
    assert all(sampler_name(a) == n for a, n in ALIASES.items())
    assert rows["sde-dpmsolver++2m"]["noise"] == "reverse SDE" and rows["dpmsolver++2m"]["multistep"]


@pytest.mark.parametrize("method", D.STOCHASTIC)
def test_every_sde_sampler_through_solve_reads_the_problems_brownian_tree(method):
    """The SDE samplers through solve are sample() with noise ΔW/√h of the problem's Brownian tree (in s = −t)."""
    net = sk.MLP("eps", [3, 16, 2])
    model = D.reverse_sde(SCHEDULE, X, net(sp.Matrix([*X, sk.t])))
    y0 = np.random.default_rng(1).standard_normal((6, 2))
    ens = sk.Ensemble(sk.SDEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": _mlp_weights()}), y0=y0, seed=7)
    ts = D.timesteps(SCHEDULE, 8, t_end=T_END)
    s = -ts
    noise = [(dW / np.sqrt(h)).T for (dW, _), h in zip(sk.brownian_tree(ens).increments(s), np.diff(s))]
    want, _ = D.sample(SCHEDULE, D.MLPNetwork(_mlp_weights()), y0, ts, method, noise=noise)
    sol = sk.solve(ens, method, ts=ts)
    np.testing.assert_allclose(sol.y[:, -1], want, rtol=1e-12, atol=1e-12)
    assert sol.stats["nf"] == 8


def test_a_single_problem_and_dt_steps():
    prob, _ = _mlp_problem(ensemble=False)
    sol = sk.solve(prob, "dpmsolver++2m", dt=(1.0 - T_END) / 12)
    want, _ = D.sample(SCHEDULE, D.MLPNetwork(_mlp_weights()), np.array([[0.3, -0.2]]), np.linspace(1.0, T_END, 13),
                       "dpmsolver++2m")
    assert sol.y.shape == (2, 2) and sol.retcode == "Success"
    np.testing.assert_allclose(sol.y[-1], want[0], rtol=1e-12)


def test_an_external_torch_network_gives_the_mlps_samples_with_nfe_calls():
    torch = pytest.importorskip("torch", reason="the External network of this test is a torch module")
    seq = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    with torch.no_grad():
        for lin, (W, b) in zip((seq[0], seq[2]), _mlp_weights()):
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
    calls = []
    seq.register_forward_hook(lambda module, inputs, output: calls.append(tuple(inputs[0].shape)))
    model = D.probability_flow(SCHEDULE, X, sk.External("eps", 3, 2)(sp.Matrix([*X, sk.t])))
    ens, y0 = _mlp_problem()
    external = sk.Ensemble(sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": seq}), y0=y0)
    ts = D.timesteps(SCHEDULE, 7, t_end=T_END)
    for method in ("unipc3-bh1", "dpmsolver-3"):
        calls.clear()
        sol = sk.solve(external, method, ts=ts)
        np.testing.assert_allclose(sol.y[:, -1], sk.solve(ens, method, ts=ts).y[:, -1], rtol=1e-12)
        assert len(calls) == sol.stats["nf"] == D.nfe(method, 7) and calls[0] == (6, 3)
    for wrong in (lambda X: np.ones((X.shape[0], 3)), lambda X: np.ones((X.shape[0], 1))):     # not (n, 2)
        bad = sk.Ensemble(sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": wrong}), y0=y0)
        with pytest.raises(ValueError, match=r"an External network must return \(n, n_out\) = \(6, 2\)"):
            sk.solve(bad, "ddim", ts=ts)


@pytest.fixture(scope="module")
def mixture_reference():
    """The mixture's probability-flow ODE solved by Tsit5 on the Numba kernel (the closed-form network in the
    kernel) to 1e-11: the reference the samplers must reach."""
    model = D.probability_flow(SCHEDULE, X, MIXTURE.eps_expression(SCHEDULE, X))
    y0 = np.random.default_rng(0).standard_normal((8, 2))
    ens = sk.Ensemble(sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END)), y0=y0)
    ref = sk.solve(ens, "Tsit5", rtol=1e-11, atol=1e-11)
    assert ref.success and ref.backend == "numba"
    return ens, ref.y[:, -1]


@pytest.mark.parametrize("method, order, steps", [("dpmsolver++2m", 2, (20, 40, 80)), ("dpmsolver++3m", 3, (40, 80, 160)),
                                                   ("unipc2-bh2", 3, (40, 80, 160)), ("ddim", 1, (20, 40, 80))])
def test_samplers_through_solve_converge_to_the_catalogues_solution_at_their_order(mixture_reference, method, order,
                                                                                  steps):
    ens, ref = mixture_reference
    errs = [np.abs(sk.solve(ens, method, ts=D.timesteps(SCHEDULE, n, t_end=T_END)).y[:, -1] - ref).max() for n in steps]
    p = observed_order([1 / n for n in steps], errs)
    assert p >= order - 0.3 and errs[-1] < 0.1, (method, p, errs)


@pytest.mark.parametrize("prediction", ["x0", "v", "flow"])
def test_every_prediction_converts_alike_in_the_model_and_the_sampler(prediction):
    """The model converts the network's prediction to ε in sympy (its drift), the sampler numerically
    (sdekit.sampling.Network): UniPC-2 converges to the model's Tsit5 solution at order 3 for each."""
    net = sk.MLP("eps", [3, 16, 2])
    model = D.probability_flow(SCHEDULE, X, net(sp.Matrix([*X, sk.t])), prediction=prediction)
    ens = sk.Ensemble(sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": _mlp_weights()}),
                      y0=np.random.default_rng(1).standard_normal((6, 2)))
    ref = sk.solve(ens, "Tsit5", rtol=1e-10, atol=1e-10, backend="numpy").y[:, -1]
    steps = (20, 40, 80)
    errs = [np.abs(sk.solve(ens, "unipc2-bh2", ts=D.timesteps(SCHEDULE, n, t_end=T_END)).y[:, -1] - ref).max()
            for n in steps]
    assert observed_order([1 / n for n in steps], errs) >= 2.7 and errs[-1] < 1e-3 * np.abs(ref).max(), errs


def test_sde_samplers_share_the_brownian_path_with_the_catalogue():
    """The reverse SDE's SDE-DPM-Solver++ samples (noise ΔW/√h of the problem's tree over the grid) converge
    strongly, at order ≈ 1 (additive noise), to SRA1 at dt = 2^-12 on the same Brownian path."""
    model = D.reverse_sde(SCHEDULE, X, MIXTURE.eps_expression(SCHEDULE, X))
    ens = sk.Ensemble(sk.SDEProblem(model, [0.0, 0.0], (1.0, 0.05)), y0=np.random.default_rng(0).standard_normal((32, 2)),
                      seed=3)
    ref = sk.solve(ens, "SRA1", dt=2.0**-12, backend="numpy").y[:, -1]
    steps = (16, 32, 64, 128)
    for method in ("sde-dpmsolver++1", "sde-dpmsolver++2m"):
        errs = [np.sqrt(np.mean((sk.solve(ens, method, ts=D.timesteps(SCHEDULE, n, t_end=0.05)).y[:, -1] - ref) ** 2))
                for n in steps]
        assert observed_order([1 / n for n in steps], errs) >= 0.8 and errs[-1] < 0.05, (method, errs)
    other_seed = sk.Ensemble(ens.problem, y0=ens.y0, seed=4)
    far = sk.solve(other_seed, "sde-dpmsolver++2m", ts=D.timesteps(SCHEDULE, 128, t_end=0.05)).y[:, -1]
    assert np.sqrt(np.mean((far - ref) ** 2)) > 0.1          # another path lands elsewhere: the coupling is real


def test_ddim_with_eta_samples_the_reverse_sde():
    ens, y0 = _mlp_problem()
    model = D.reverse_sde(SCHEDULE, X, sk.MLP("eps", [3, 16, 2])(sp.Matrix([*X, sk.t])))
    sde = sk.Ensemble(sk.SDEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": _mlp_weights()}), y0=y0, seed=2)
    ts = D.timesteps(SCHEDULE, 6, t_end=T_END)
    a, b = sk.solve(sde, "ddim", ts=ts, eta=1.0), sk.solve(sde, "ddim", ts=ts, eta=1.0)
    assert np.array_equal(a.y, b.y) and a.stats["nf"] == 6          # the tree's noise: reproducible
    assert not np.allclose(a.y[:, -1], sk.solve(ens, "ddim", ts=ts).y[:, -1])


def test_catalogue_euler_stays_the_catalogues():
    from sdekit.diffusion_models import sampler_name
    assert sampler_name("Euler") is None and sampler_name("euler") is None and sampler_name("edm-euler") == "euler"
    ens, _ = _mlp_problem()
    assert sk.solve(ens, "Euler", dt=0.01, backend="numpy").method == "Euler"


@pytest.mark.parametrize("call, error, match", [
    (lambda ens: sk.solve(sk.ODEProblem(sk.ODE(X, -X), [1.0, 0.0], (1.0, 0.1)), "dpmsolver++2m", dt=0.1),
     sk.ModelError, "needs a model from sk.diffusion.probability_flow"),
    (lambda ens: sk.solve(ens, "sde-dpmsolver++2m", ts=D.timesteps(SCHEDULE, 4, t_end=T_END)), sk.ModelError,
     "build the model with sk.diffusion.reverse_sde"),
    (lambda ens: sk.solve(ens, "ddim", ts=D.timesteps(SCHEDULE, 4, t_end=T_END), eta=1.0), sk.ModelError, "reverse SDE"),
    (lambda ens: sk.solve(ens, "ddim"), ValueError, "give ts="),
    (lambda ens: sk.solve(ens, "ddim", dt=0.1, backend="numba"), sk.ModelError, "calls the network on the host"),
    (lambda ens: sk.solve(ens, "ddim", dt=0.1, rtol=1e-3), TypeError, "rtol"),
    (lambda ens: sk.solve(sk.Ensemble(sk.ODEProblem(ens.problem.model, [0.0, 0.0], (T_END, 1.0), nets=ens.problem.nets),
                                      n=2), "ddim", dt=0.1), ValueError, "tspan must decrease"),
    (lambda ens: D.probability_flow(D.DiscreteVP.scaled_linear(), X, X), ValueError, "not a symbolic schedule"),
    (lambda ens: D.probability_flow(SCHEDULE, X, sp.Matrix([X[0]])), sk.ModelError, "shape"),
    (lambda ens: D.reverse_sde(SCHEDULE, X, X, prediction="score"), ValueError, "prediction must be one of"),
])
def test_bad_sampler_solves_are_named(call, error, match):
    ens, _ = _mlp_problem()
    with pytest.raises(error, match=match):
        call(ens)


def test_inspect_prints_the_network_module_of_a_sampler():
    ens, _ = _mlp_problem()
    text = sk.inspect(ens, "dpmsolver++2m")
    assert text.startswith("# dpmsolver++2m") and "def rhs(" in text and "mlp_forward" in text
    assert "def kernel(" in sk.inspect(ens, "Tsit5", backend="numpy", adaptive=True)   # the catalogue's, as before


def test_the_problems_network_has_an_exact_tangent_pass_for_newton_inversion():
    """sk.diffusion.network(problem): the MLP with the problem's weights, its jvp the generated tangent pass —
    equal to a central difference, and Newton inversion with it is MLPNetwork's (same NFE)."""
    ens, _ = _mlp_problem()
    net, ref = D.network(ens), D.MLPNetwork(_mlp_weights())
    rng = np.random.default_rng(2)
    x, v = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    np.testing.assert_allclose(net(x, 0.3), ref(x, 0.3), rtol=1e-14, atol=1e-15)
    out, jv = net.jvp(x, 0.3, v)
    h = 1e-6
    np.testing.assert_allclose(jv, (net(x + h * v, 0.3) - net(x - h * v, 0.3)) / (2 * h), rtol=1e-7, atol=1e-9)
    ts = D.timesteps(SCHEDULE, 10, t_end=T_END)[::-1]
    ours = D.invert(SCHEDULE, net, x, ts, "dpmsolver-2", solver="newton", tol=1e-12)
    theirs = D.invert(SCHEDULE, ref, x, ts, "dpmsolver-2", solver="newton", tol=1e-12)
    assert ours.success and ours.nfe == theirs.nfe
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-12, atol=1e-13)


def test_an_external_problems_network_inverts_by_finite_differences():
    """An External network has no tangent pass (jvp None): Newton takes finite differences, and sampling the
    inverted latent returns to the data."""
    model = D.probability_flow(SCHEDULE, X, sk.External("eps", 3, 2)(sp.Matrix([*X, sk.t])))
    mlp = D.MLPNetwork(_mlp_weights())
    prob = sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": lambda X: mlp(X[:, :2], X[0, 2])})
    net = D.network(prob)
    assert net.jvp is None
    x0 = np.random.default_rng(4).standard_normal((5, 2))
    ts = D.timesteps(SCHEDULE, 8, t_end=T_END)[::-1]
    inv = D.invert(SCHEDULE, net, x0, ts, "ddim", solver="newton", tol=1e-11)
    back, _ = D.sample(SCHEDULE, net, inv.x, ts[::-1], "ddim")
    assert inv.success and np.abs(back - x0).max() < 1e-9
    with pytest.raises(sk.ModelError, match="needs a problem of sk.diffusion.probability_flow"):
        D.network(sk.ODEProblem(sk.ODE(X, -X), [1.0, 0.0], (0.0, 1.0)))


@pytest.mark.parametrize("kind", ["mlp", "external"])
def test_the_inversion_api_runs_on_a_problems_network(kind):
    """Issue 17 through the public API with a model's own network (an in-kernel sk.MLP's generated code, or an
    External): EDICT and BDIA round trips to rounding, fixed-point inversion to its tolerance, and a retcode
    where it stops short of it."""
    if kind == "mlp":
        prob = _mlp_problem(ensemble=False)[0]
    else:
        mlp = D.MLPNetwork(_mlp_weights())
        model = D.probability_flow(SCHEDULE, X, sk.External("eps", 3, 2)(sp.Matrix([*X, sk.t])))
        prob = sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": lambda X_: mlp(X_[:, :2], X_[0, 2])})
    net = D.network(prob)
    x = np.random.default_rng(5).standard_normal((7, 2))
    ts = D.timesteps(SCHEDULE, 12, t_end=T_END)
    xe, ye, _ = D.edict(SCHEDULE, net, x, ts)
    back, _, _ = D.edict(SCHEDULE, net, xe, ts, y=ye, inverse=True)
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-12)
    z, before, _ = D.bdia(SCHEDULE, net, x, ts)
    start, _, _ = D.bdia(SCHEDULE, net, z, ts, previous=before, inverse=True)
    np.testing.assert_allclose(start, x, rtol=0, atol=1e-11)
    inv = D.invert(SCHEDULE, net, x, ts[::-1], "dpmsolver-2", solver="fixed-point", tol=1e-11)
    assert inv.success and inv.residual.max() < 1e-10
    few = D.invert(SCHEDULE, net, x, ts[::-1], "dpmsolver-2", solver="fixed-point", tol=1e-14, maxiter=1)
    assert set(few.retcodes) == {"MaxIters"}


def test_a_problems_network_inverts_torch_tensors_and_any_sampler_inverts_explicitly():
    """Newton on torch tensors: exact JVPs through an MLP's tangent pass, finite differences for an External (its
    network answers torch with torch); RF-Solver-2 and FireFlow invert explicitly (their own loops) and refuse
    the one-step solvers by name."""
    torch = pytest.importorskip("torch", reason="the inputs of this test are torch tensors")
    mlp = D.MLPNetwork(_mlp_weights())
    model = D.probability_flow(SCHEDULE, X, sk.External("eps", 3, 2)(sp.Matrix([*X, sk.t])))
    external = D.network(sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": lambda X_: mlp(X_[:, :2], X_[0, 2])}))
    inside = D.network(_mlp_problem(ensemble=False)[0])
    x = torch.tensor(np.random.default_rng(0).standard_normal((4, 2)))
    grid = D.timesteps(SCHEDULE, 6, t_end=T_END)[::-1]
    for net in (external, inside):
        inv = D.invert(SCHEDULE, net, x, grid, "ddim", solver="newton", tol=1e-11)
        back, _ = D.sample(SCHEDULE, net, inv.x, grid[::-1], "ddim")
        assert isinstance(inv.x, torch.Tensor) and inv.success and float((back - x).abs().max()) < 1e-8
    for method in ("rf-solver-2", "fireflow"):
        inv = D.invert(SCHEDULE, inside, x.numpy(), grid, method)
        assert inv.nfe == D.nfe(method, 6) and inv.residual is None
        with pytest.raises(ValueError, match="singlestep sampler"):
            D.invert(SCHEDULE, inside, x.numpy(), grid, method, solver="fixed-point")
    ens, _ = _mlp_problem()
    with pytest.raises(ValueError, match="ts must run from t0 = 1.0 down to t1 = 0.01"):
        sk.solve(ens, "ddim", ts=[0.9, 0.5, 0.1])


@pytest.mark.parametrize("method", ["ETDRK4", "Krogstad"])
def test_the_catalogues_exponential_methods_take_the_schedules_f_exactly(mixture_reference, method):
    """probability_flow gives VP's f(t)·I as the linear part (f = d log α/dt; solved in u = −log α), so ETDRK4 and
    Krogstad on the sampler's λ-uniform grid converge at order 4 to the reference."""
    ens, ref = mixture_reference
    assert ens.problem.model.form.linear_time == SCHEDULE.f
    steps = (20, 40, 80)
    errs = [np.abs(sk.solve(ens, method, ts=D.timesteps(SCHEDULE, n, t_end=T_END), backend="numpy").y[:, -1] - ref).max()
            for n in steps]
    assert observed_order([1 / n for n in steps], errs) >= 3.7, errs


def test_classifier_free_guidance_in_the_model_with_the_scale_a_runtime_param():
    """probability_flow(..., uncond=, guidance_scale=w) with w an sk.params symbol: ε from u + w (c − u), sampled
    through solve as sample(..., uncond=, guidance_scale=) does; another w is another value, not another model."""
    cond, unc = sk.MLP("c", [3, 16, 2]), sk.MLP("u", [3, 16, 2])
    w = sk.params("w")
    inputs = sp.Matrix([*X, sk.t])
    model = D.probability_flow(SCHEDULE, X, cond(inputs), uncond=unc(inputs), guidance_scale=w)
    y0 = np.random.default_rng(1).standard_normal((5, 2))
    ts = D.timesteps(SCHEDULE, 8, t_end=T_END)
    for scale in (1.5, 4.0):
        prob = sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END), params={"w": scale},
                             nets={"c": _mlp_weights(0), "u": _mlp_weights(1)})
        sol = sk.solve(sk.Ensemble(prob, y0=y0), "dpmsolver++2m", ts=ts)
        want, nfe = D.sample(SCHEDULE, D.MLPNetwork(_mlp_weights(0)), y0, ts, "dpmsolver++2m",
                             uncond=D.MLPNetwork(_mlp_weights(1)), guidance_scale=scale)
        np.testing.assert_allclose(sol.y[:, -1], want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="needs both uncond"):
        D.probability_flow(SCHEDULE, X, cond(inputs), uncond=unc(inputs))


def test_the_mr_sampler_through_solve_on_a_mean_reverting_model():
    """probability_flow(mean_reverting schedule, ..., mean=μ): dx/dt = f (x − μ) + g²/(2σ) ε; solve's samplers run as
    the MR Sampler (sample(..., mean=μ)) and converge at order 2 (2M) to the model's own Tsit5 solution."""
    mr = D.mean_reverting(1 + sk.t, sp.Rational(1, 2))
    mu = [0.7, -0.3]
    eps = D.GaussianMixture([[-0.4, 0.1], [0.5, 0.3]], [0.2, 0.3]).eps_expression(mr, sp.Matrix(X) - sp.Matrix(mu))
    model = D.probability_flow(mr, X, eps, mean=mu)
    x_T = np.array(mu) + 0.5 * np.random.default_rng(4).standard_normal((8, 2))
    ens = sk.Ensemble(sk.ODEProblem(model, [0.0, 0.0], (1.0, 0.05)), y0=x_T)
    ref = sk.solve(ens, "Tsit5", rtol=1e-11, atol=1e-11, backend="numpy").y[:, -1]
    steps = (16, 32, 64)
    got = [sk.solve(ens, "dpmsolver++2m", ts=D.timesteps(mr, n, t_start=1.0, t_end=0.05)).y[:, -1] for n in steps]
    eps_f = sp.lambdify([*X, sk.t], eps)
    network = lambda x, t: np.array([np.ravel(eps_f(*row, t)) for row in x])      # noqa: E731
    want, _ = D.sample(mr, network, x_T, D.timesteps(mr, 16, t_start=1.0, t_end=0.05), "dpmsolver++2m",
                       mean=np.array(mu))
    np.testing.assert_allclose(got[0], want, rtol=1e-10, atol=1e-12)
    errs = [np.abs(g - ref).max() for g in got]
    assert observed_order([1 / n for n in steps], errs) >= 1.75, errs


def test_float32_inversion_converges_and_keeps_its_dtype():
    """The pipelines' float32: fixed-point (Anderson weights solved in float64) and Newton (difference steps of
    √ε_float32) reach a float32-sized tolerance on torch and numpy float32 inputs, which come back float32."""
    torch = pytest.importorskip("torch", reason="the inputs of this test are torch tensors")
    mlp = D.MLPNetwork(_mlp_weights())
    model = D.probability_flow(SCHEDULE, X, sk.External("eps", 3, 2)(sp.Matrix([*X, sk.t])))
    external = D.network(sk.ODEProblem(model, [0.0, 0.0], (1.0, T_END), nets={"eps": lambda X_: mlp(X_[:, :2], X_[0, 2])}))
    x = torch.tensor(np.random.default_rng(0).standard_normal((50, 2)), dtype=torch.float32)
    grid = D.timesteps(SCHEDULE, 8, t_end=T_END)[::-1]
    for solver in ("fixed-point", "newton"):
        inv = D.invert(SCHEDULE, external, x, grid, "ddim", solver=solver, tol=1e-5)
        assert inv.success and inv.x.dtype == torch.float32, solver
        back, _ = D.sample(SCHEDULE, external, inv.x, grid[::-1], "ddim")
        assert float((back - x).abs().max()) < 5e-3
    inv = D.invert(SCHEDULE, D.network(_mlp_problem(ensemble=False)[0]), x.numpy(), grid, "ddim", solver="newton",
                   tol=1e-5)
    assert inv.success and inv.x.dtype == np.float32
