"""sdekit's samplers against diffusers' schedulers (a test-only dependency): the same network (the
Gaussian mixture's exact ε), the same discrete schedule (the scheduler's own alphas_cumprod), the
same timesteps and initial noise give the same samples to 1e-6 relative (diffusers computes its
σ's in float32).  Its traps are named: ``final_sigmas_type="zero"`` forces a first-order last step
(we compare with "sigma_min"); ``clip_sample`` is on by default in DDIMScheduler; DDIM's
"trailing" spacing steps from t to t − N/n, not to the next listed timestep (we use "leading")."""
import warnings

import numpy as np
import pytest

import sdekit as sk

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test-only dependency (pyproject [test])")
torch = pytest.importorskip("torch", reason="diffusers needs torch")

D = sk.diffusion
N = 1000
BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=N)


def _run(scheduler, x, eps_index, every: bool = False):
    """The scheduler's sample after its last step (``every``: after each step)."""
    xt, states = torch.as_tensor(x, dtype=torch.float64), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in scheduler.timesteps:
            out = torch.as_tensor(eps_index(xt.numpy(), int(k)), dtype=torch.float64)
            xt = scheduler.step(out, k, xt).prev_sample
            states.append(xt.numpy())
    return states if every else xt.numpy()


@pytest.fixture(scope="module")
def setup():
    abar = diffusers.DDIMScheduler(**BETAS).alphas_cumprod.double().numpy()
    schedule = D.DiscreteVP(abar)                       # timestep k sits at t = (k + 1)/N
    eps = D.GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.7, 0.9], [0.4, 0.6]).eps(schedule)
    x = np.random.default_rng(0).standard_normal((8, 2))
    return schedule, eps, (lambda x, k: eps(x, (k + 1) / N)), x


def _close(got, want):
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-3)) < 1e-6


@pytest.mark.parametrize("order, ours, algorithm", [(1, "ddim", "dpmsolver++"), (2, "dpmsolver++2m", "dpmsolver++"),
                                                (3, "dpmsolver++3m-compat", "dpmsolver++"), (2, "dpmsolver-2m", "dpmsolver")])
def test_dpmsolver_multistep_matches_diffusers(setup, order, ours, algorithm):
    schedule, eps, eps_index, x = setup
    sch = diffusers.DPMSolverMultistepScheduler(**BETAS, solver_order=order, algorithm_type=algorithm,
                                                final_sigmas_type="sigma_min", lower_order_final=False,
                                                timestep_spacing="linspace")
    sch.set_timesteps(12)
    want = _run(sch, x, eps_index)
    ts = np.append((sch.timesteps.numpy() + 1.0) / N, 1.0 / N)     # ... then sigma_min: timestep 0
    got, nfe = D.sample(schedule, eps, x, ts, ours)
    assert nfe == 12
    _close(got, want)


def test_karras_timesteps_match_diffusers(setup):
    """``timesteps(..., "karras")`` gives diffusers' ``use_karras_sigmas`` σ's (its "linspace" spacing spans
    timesteps 999 .. 0, our t = 1 .. 1/N; its n σ's are our n − 1 steps' ends)."""
    schedule = setup[0]
    sch = diffusers.EulerDiscreteScheduler(**BETAS, use_karras_sigmas=True, timestep_spacing="linspace")
    sch.set_timesteps(10)
    ts = D.timesteps(schedule, 9, "karras")
    np.testing.assert_allclose(np.exp(-schedule("lam", ts)), sch.sigmas.numpy()[:-1].astype(float), rtol=1e-6)


def test_exact_3m_is_not_diffusers_3m(setup):
    """diffusers' 3M is the published (order-2) weight; sdekit's default 3M differs from it."""
    schedule, eps, eps_index, x = setup
    ts = (np.linspace(999, 100, 13).round() + 1) / N
    exact, _ = D.sample(schedule, eps, x, ts, "dpmsolver++3m")
    compat, _ = D.sample(schedule, eps, x, ts, "dpmsolver++3m-compat")
    assert np.max(np.abs(exact - compat)) > 1e-4


def test_ddim_matches_diffusers(setup):
    schedule, eps, eps_index, x = setup
    sch = diffusers.DDIMScheduler(**BETAS, timestep_spacing="leading", set_alpha_to_one=False, clip_sample=False)
    sch.set_timesteps(10)
    want = _run(sch, x, eps_index)       # its last step, 0 -> "final alpha" = alphas_cumprod[0], is the identity
    got, _ = D.sample(schedule, eps, x, (sch.timesteps.numpy() + 1.0) / N, "ddim")
    _close(got, want)


def test_euler_in_sigma_matches_diffusers(setup):
    """diffusers works on x̃ = x/α (its σ is σ/α) and feeds the network scale_model_input(x̃) = x;
    "leading" spacing puts every timestep on the table (its "linspace" interpolates σ between them,
    another schedule), and its last step, to sigma_min = σ(timestep 0), has zero length."""
    schedule, eps, eps_index, x = setup
    sch = diffusers.EulerDiscreteScheduler(**BETAS, timestep_spacing="leading", final_sigmas_type="sigma_min")
    sch.set_timesteps(12)
    sig = sch.sigmas.double().numpy()
    xt = torch.as_tensor(x * np.sqrt(sig[0] ** 2 + 1), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in sch.timesteps:
            inp = sch.scale_model_input(xt, k)
            out = torch.as_tensor(eps_index(inp.numpy(), int(k)), dtype=torch.float64)
            xt = sch.step(out, k, xt).prev_sample
    want = xt.numpy() / np.sqrt(sig[-1] ** 2 + 1)          # back to x = α x̃
    got, _ = D.sample(schedule, eps, x, (sch.timesteps.numpy() + 1.0) / N, "euler")
    _close(got, want)


@pytest.mark.parametrize("order, ours", [(1, "sde-dpmsolver++1"), (2, "sde-dpmsolver++2m"), (3, "sde-dpmsolver++3m-compat")])
def test_sde_dpmsolver_matches_diffusers_with_the_same_noise(setup, order, ours):
    """The same standard normals injected (``variance_noise``); diffusers updates x in float32, so
    the agreement is to 1e-6 of the sample's scale."""
    schedule, eps, eps_index, x = setup
    sch = diffusers.DPMSolverMultistepScheduler(**BETAS, solver_order=order, algorithm_type="sde-dpmsolver++",
                                                final_sigmas_type="sigma_min", lower_order_final=False,
                                                timestep_spacing="linspace")
    sch.set_timesteps(12)
    z = np.random.default_rng(1).standard_normal((12,) + x.shape)
    xt = torch.as_tensor(x, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, k in enumerate(sch.timesteps):
            out = torch.as_tensor(eps_index(xt.numpy(), int(k)), dtype=torch.float64)
            xt = sch.step(out, k, xt, variance_noise=torch.as_tensor(z[i])).prev_sample
    want = xt.numpy()
    got, nfe = D.sample(schedule, eps, x, np.append((sch.timesteps.numpy() + 1.0) / N, 1.0 / N), ours, noise=z)
    assert nfe == 12 and np.max(np.abs(got - want)) < 1e-6 * np.max(np.abs(want))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("lower_order_final", [False, True])
def test_unipc_matches_diffusers(setup, order, variant, lower_order_final):
    """UniPC (predictor UniP-p and corrector UniC, data prediction) against UniPCMultistepScheduler."""
    schedule, eps, eps_index, x = setup
    sch = diffusers.UniPCMultistepScheduler(**BETAS, solver_order=order, solver_type=variant, predict_x0=True,
                                            final_sigmas_type="sigma_min", lower_order_final=lower_order_final,
                                            timestep_spacing="linspace")
    sch.set_timesteps(12)
    want = _run(sch, x, eps_index)
    ts = np.append((sch.timesteps.numpy() + 1.0) / N, 1.0 / N)
    got, nfe = D.sample(schedule, eps, x, ts, f"unipc{order}-{variant}", lower_order_final=lower_order_final)
    assert nfe == 12
    _close(got, want)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("lower_order_final", [False, True])
def test_deis_matches_diffusers(setup, order, lower_order_final):
    """tAB-DEIS (log-ρ) against DEISMultistepScheduler.  Its trap: it evaluates the DEIS weights from its
    float32 σ's, and 1/(Δ log ρ)² amplifies that to 4e-6 at order 3; with its σ's in float64 it agrees to 1e-8."""
    schedule, eps, eps_index, x = setup
    sch = diffusers.DEISMultistepScheduler(**BETAS, solver_order=order, lower_order_final=lower_order_final,
                                           timestep_spacing="linspace")
    sch.set_timesteps(12)
    sch.sigmas = sch.sigmas.double()
    want = _run(sch, x, eps_index)
    ts = np.append((sch.timesteps.numpy() + 1.0) / N, 1.0 / N)
    got, nfe = D.sample(schedule, eps, x, ts, f"deis{order}", lower_order_final=lower_order_final)
    assert nfe == 12
    _close(got, want)


def test_flow_match_euler_matches_diffusers():
    """Flow-matching Euler with diffusers' ``shift`` = 3 (σ = 3s/(1 + 2s)) and a flow-prediction network
    (u = ε − x̂ of the mixture) against FlowMatchEulerDiscreteScheduler, down to σ = 0."""
    shift = 3.0
    schedule = D.flow_matching(shift=3)
    eps = D.GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.7, 0.9], [0.4, 0.6]).eps(schedule)

    def flow(x, t):
        a, s = float(schedule("alpha", t)), float(schedule("sigma", t))
        e = eps(x, t)
        return e - (x - s * e) / a
    sch = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=N, shift=shift)
    sch.set_timesteps(sigmas=list(np.linspace(0.995, 0.01, 12)))
    sigmas = sch.sigmas.double().numpy()
    t_of = lambda sg: sg / (shift - (shift - 1) * sg)          # noqa: E731  (the inverse of the shift)
    x = np.random.default_rng(0).standard_normal((8, 2))
    xt = torch.as_tensor(x, dtype=torch.float64)
    for i, k in enumerate(sch.timesteps):                      # its timesteps are σN, floats
        xt = sch.step(torch.as_tensor(flow(xt.numpy(), t_of(sigmas[i])), dtype=torch.float64), k, xt).prev_sample
    want = xt.numpy()
    got, nfe = D.sample(schedule, flow, x, t_of(sigmas), "flow-euler", prediction="flow")
    assert nfe == 12
    _close(got, want)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps", [5, 12, 25])
def test_discrete_timestep_spacings_match_diffusers(setup, spacing, steps):
    """``timesteps(DiscreteVP, n, "linspace" | "leading" | "trailing")`` are diffusers' integer timesteps (then
    timestep 0), and a UniPC run on them matches the scheduler's."""
    schedule, eps, eps_index, x = setup
    sch = diffusers.UniPCMultistepScheduler(**BETAS, solver_order=2, final_sigmas_type="sigma_min",
                                            lower_order_final=False, timestep_spacing=spacing)
    sch.set_timesteps(steps)
    ts = D.timesteps(schedule, steps, spacing)
    np.testing.assert_array_equal(ts, np.append((sch.timesteps.numpy() + 1.0) / N, 1.0 / N))
    _close(D.sample(schedule, eps, x, ts, "unipc2-bh2")[0], _run(sch, x, eps_index))


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_ddim_with_eta_matches_diffusers_with_the_same_noise(setup, eta):
    """DDIM with η > 0 (η = 1: DDPM's ancestral step) against DDIMScheduler with the same injected noise."""
    schedule, eps, eps_index, x = setup
    sch = diffusers.DDIMScheduler(**BETAS, timestep_spacing="leading", set_alpha_to_one=False, clip_sample=False)
    sch.set_timesteps(10)
    z = np.random.default_rng(2).standard_normal((10,) + x.shape)
    xt = torch.as_tensor(x, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, k in enumerate(sch.timesteps):
            out = torch.as_tensor(eps_index(xt.numpy(), int(k)), dtype=torch.float64)
            xt = sch.step(out, k, xt, eta=eta, variance_noise=torch.as_tensor(z[i])).prev_sample
    got, nfe = D.sample(schedule, eps, x, (sch.timesteps.numpy() + 1.0) / N, "ddim", eta=eta, noise=z)
    assert nfe == 9 and np.max(np.abs(got - xt.numpy())) < 1e-6 * np.max(np.abs(xt.numpy()))   # its 10th step: identity


@pytest.mark.parametrize("order, ours", [(2, "dpmsolver++2m"), (3, "dpmsolver++3m-compat")])
def test_dpmsolver_lower_order_final_and_zero_final_sigma_match_diffusers(setup, order, ours):
    """diffusers' defaults for short runs: ``lower_order_final`` (under 15 steps the last step is first order,
    the one before at most second) and ``final_sigmas_type="zero"`` (the last step reaches σ = 0, t = 0 of
    the discrete schedule: x = x̂)."""
    schedule, eps, eps_index, x = setup
    for final, t_last in (("sigma_min", 1.0 / N), ("zero", 0.0)):
        sch = diffusers.DPMSolverMultistepScheduler(**BETAS, solver_order=order, algorithm_type="dpmsolver++",
                                                    final_sigmas_type=final, lower_order_final=True,
                                                    timestep_spacing="linspace")
        sch.set_timesteps(8)
        want = _run(sch, x, eps_index)
        got, nfe = D.sample(schedule, eps, x, np.append((sch.timesteps.numpy() + 1.0) / N, t_last), ours,
                            lower_order_final=True)
        assert nfe == 8
        _close(got, want)


@pytest.mark.parametrize("order, ours", [(1, "ddim"), (2, "dpmsolver++2m")])
def test_dynamic_thresholding_matches_diffusers(setup, order, ours):
    """``thresholding=`` (Imagen's dynamic thresholding of x̂) as DPMSolverMultistepScheduler's
    ``thresholding=True``: a wide mixture (|x̂| up to ~3) so that both the quantile and its clip to
    [1, sample_max_value] act."""
    schedule = setup[0]
    eps2 = D.GaussianMixture([[-2.5, 0.0], [1.0, 2.0]], [0.6, 0.9], [0.4, 0.6]).eps(schedule)

    def eps(x, t):          # samples (n, channels, 1): diffusers thresholds samples of 3 or more axes
        return eps2(x[..., 0], t)[..., None]
    x = np.random.default_rng(1).standard_normal((16, 2, 1)) * 1.5
    sch = diffusers.DPMSolverMultistepScheduler(**BETAS, solver_order=order, algorithm_type="dpmsolver++",
                                                final_sigmas_type="sigma_min", lower_order_final=False,
                                                timestep_spacing="linspace", thresholding=True,
                                                dynamic_thresholding_ratio=0.9, sample_max_value=1.6)
    sch.set_timesteps(12)
    want = _run(sch, x, lambda x, k: eps(x, (k + 1) / N))
    ts = np.append((sch.timesteps.numpy() + 1.0) / N, 1.0 / N)
    got, _ = D.sample(schedule, eps, x, ts, ours, thresholding=0.9, sample_max_value=1.6)
    plain, _ = D.sample(schedule, eps, x, ts, ours)
    # diffusers' float32 σ's move x̂ by ~1e-7; where x̂ is divided by its quantile s that doubles: 1e-5, not 1e-6
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-3)) < 1e-5
    assert np.max(np.abs(got - plain)) > 1e-2          # thresholding acted


def test_classifier_free_guidance_is_the_guided_model(setup):
    """``uncond=``, ``guidance_scale=`` w: the sampler sees u + w (c − u), one NFE per guided evaluation."""
    schedule, eps, _, x = setup
    other = D.GaussianMixture([[0.5, -1.0]], [0.8], [1.0]).eps(schedule)
    ts = D.timesteps(schedule, 10)
    w = 3.0
    got, nfe = D.sample(schedule, eps, x, ts, "dpmsolver++2m", uncond=other, guidance_scale=w)
    want, _ = D.sample(schedule, lambda x, t: other(x, t) + w * (eps(x, t) - other(x, t)), x, ts, "dpmsolver++2m")
    assert nfe == 10
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="needs both uncond"):
        D.sample(schedule, eps, x, ts, "ddim", guidance_scale=w)
    with pytest.raises(ValueError, match="quantile ratio"):
        D.sample(schedule, eps, x, ts, "ddim", thresholding=1.5)
    with pytest.raises(ValueError, match="sample_max_value"):
        D.sample(schedule, eps, x, ts, "ddim", thresholding=0.9, sample_max_value=0.5)


@pytest.mark.parametrize("steps", [6, 15])
def test_pndm_matches_diffusers_plms(setup, steps):
    """``"pndm"`` is PNDMScheduler's PLMS (``skip_prk_steps=True``): the pseudo improved-Euler first step, then
    Adams–Bashforth 2, 3, 4 on ε through the DDIM transfer.  With ``set_alpha_to_one=False`` diffusers' last
    transition (timestep 0 to ᾱ_0) moves nothing and costs one extra call: our grid ends at timestep 0."""
    schedule, eps, eps_index, x = setup
    sch = diffusers.PNDMScheduler(**BETAS, skip_prk_steps=True, set_alpha_to_one=False, timestep_spacing="leading",
                                  steps_offset=0)
    sch.set_timesteps(steps)
    want = _run(sch, x, eps_index)
    ks = np.unique(sch.timesteps.numpy())[::-1]
    got, nfe = D.sample(schedule, eps, x, (ks + 1.0) / N, "pndm")
    assert nfe == len(sch.timesteps) - 1 == D.nfe("pndm", len(ks) - 1)
    _close(got, want)


TRAJECTORIES = {
    "dpmsolver++2m": lambda: diffusers.DPMSolverMultistepScheduler(**BETAS, solver_order=2, final_sigmas_type="sigma_min",
                                                                  lower_order_final=False, timestep_spacing="linspace"),
    "dpmsolver-2m": lambda: diffusers.DPMSolverMultistepScheduler(**BETAS, solver_order=2, algorithm_type="dpmsolver",
                                                                 final_sigmas_type="sigma_min", lower_order_final=False,
                                                                 timestep_spacing="linspace"),
    "unipc2-bh2": lambda: diffusers.UniPCMultistepScheduler(**BETAS, solver_order=2, final_sigmas_type="sigma_min",
                                                           lower_order_final=False, timestep_spacing="linspace"),
    "deis2": lambda: diffusers.DEISMultistepScheduler(**BETAS, solver_order=2, lower_order_final=False,
                                                     timestep_spacing="linspace"),
}


@pytest.mark.parametrize("ours", list(TRAJECTORIES))
def test_whole_trajectories_match_diffusers(setup, ours):
    """Every intermediate sample, not only the last: after k steps the scheduler's prev_sample equals sdekit's
    sample over the first k + 1 grid points (a multistep sampler's state depends only on the steps before)."""
    schedule, eps, eps_index, x = setup
    sch = TRAJECTORIES[ours]()
    sch.set_timesteps(10)
    if ours == "deis2":
        sch.sigmas = sch.sigmas.double()
    states = _run(sch, x, eps_index, every=True)
    ts = np.append((sch.timesteps.numpy() + 1.0) / N, 1.0 / N)
    assert len(states) == len(ts) - 1
    for k, want in enumerate(states, start=1):
        _close(D.sample(schedule, eps, x, ts[:k + 1], ours)[0], want)
