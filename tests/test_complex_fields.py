"""Complex fields (issue 19): ``sk.field(name, shape, complex=True)`` integrated as its real pair (Re, Im) with
complex linear parts — complex diagonals (the diagonal state spaces of S4D), complex multiples of Laplacians,
full-FFT Fourier symbols — against closed-form solutions: exactness of the exponential methods where N does not
depend on the field, orders on the nonlinear Schrödinger soliton, and the compiled kernel against the numpy
driver (the same loop IR) in every complex basis."""
import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import sdekit as sk
from sdekit.testing import observed_order, step_counts


def _agree(prob, method, agree=1e-12, **kw):
    """The compiled kernel's solution is the numpy driver's (same steps, values to rounding); returns it."""
    a = sk.solve(prob, method, **kw)
    b = sk.solve(prob, method, backend="numpy", **kw)
    assert (a.backend, b.backend) == ("fields-numba", "fields") and step_counts(a) == step_counts(b)
    assert a.y.dtype == np.complex128 and a.y.shape == b.y.shape
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=agree * np.abs(b.y).max())
    return a


def _s4d(modes: int, lam=None):
    """x' = Λ x + B u(t): a diagonal state space with S4D-Lin's Λ_n = −1/2 + iπn (Gu et al. 2022, NeurIPS,
    "On the parameterization and initialization of diagonal state space models", §3), complex B as data."""
    lam = -0.5 + 1j * np.pi * np.arange(modes) if lam is None else lam
    x, B, u = sk.field("x", modes, complex=True), sp.Symbol("B"), sk.params("u")
    return lam, x, B, u


def _phi1_mp(z):
    """φ1(z) = (e^z − 1)/z at 40 digits (its series inside the unit disc: subnormal z included)."""
    with mpmath.workdps(40):
        z = mpmath.mpc(z)
        return sum(z**j / mpmath.factorial(j + 1) for j in range(40)) if abs(z) < 1 else mpmath.expm1(z) / z


@settings(deadline=None, max_examples=12)
@given(re=st.lists(st.floats(-1e4, 0.0), min_size=16, max_size=16),
       im=st.lists(st.floats(-1e4, 1e4), min_size=16, max_size=16),
       h=st.sampled_from([0.05, 0.3, 1.0]), seed=st.integers(0, 2**16))
def test_a_complex_diagonal_with_constant_input_is_exact_at_any_step(re, im, h, seed):
    """Random stable complex spectra (stiff and oscillatory to |λ| = 1e4) and a constant complex input B: x(t) =
    e^{tΛ} x0 + t φ1(tΛ) B, which every exponential method reproduces at any step (on the compiled kernel, whose
    eigenvalues are runtime arguments: one compile for all examples)."""
    lam = np.array(re) + 1j * np.array(im)
    _, x, B, u = _s4d(16, lam)
    rng = np.random.default_rng(seed)
    b, x0 = rng.standard_normal((2, 16)) + 1j * rng.standard_normal((2, 16))
    model = sk.FieldODE(x, linear=sk.diagonal(lam), nonlinear=u * B, data={B: b})
    prob = sk.FieldProblem(model, x0, (0.0, 1.0), params={"u": 0.7})
    T = 1.0
    phi1 = np.array([complex(_phi1_mp(T * z)) for z in lam])
    exact = np.exp(T * lam) * x0 + T * phi1 * 0.7 * b
    for method in ("ETDRK4", "ETDRK2"):
        sol = sk.solve(prob, method, dt=h, saveat=[T])
        assert sol.backend == "fields-numba"
        # e^z of |z| = |hλ| is conditioned |z| u: each step's rounding is that, over T/h steps
        tol = 1e-15 * (1 + np.abs(lam).max() * T) * (T / h + 1) + 1e-13
        np.testing.assert_allclose(sol.y[-1], exact, rtol=0, atol=tol * np.abs(exact).max())


def test_a_diagonal_state_space_with_oscillating_input_converges_at_the_methods_orders():
    """u(t) = cos ωt: x(t) = e^{tΛ} x0 + B/2 Σ± (e^{±iωt} − e^{tΛ})/(±iω − Λ); ETDRK2 order 2, ETDRK4 and
    Krogstad order 4 (for N of t alone both are the same quadrature), on both backends."""
    lam, x, B, _ = _s4d(8)
    b = np.exp(1j * np.arange(8) / 7.0)
    w, T = 3.0, 1.0
    model = sk.FieldODE(x, linear=sk.diagonal(lam), nonlinear=B * sp.cos(w * sk.t), data={B: b})
    x0 = np.full(8, 0.3 - 0.1j)
    e = np.exp(T * lam)
    exact = e * x0 + b / 2 * ((np.exp(1j * w * T) - e) / (1j * w - lam) + (np.exp(-1j * w * T) - e) / (-1j * w - lam))
    prob = sk.FieldProblem(model, x0, (0.0, T))
    dts = [0.05, 0.025, 0.0125]
    for method, order in (("ETDRK2", 2), ("ETDRK4", 4), ("Krogstad", 4)):
        errs = [np.abs(sk.solve(prob, method, dt=dt, saveat=[T]).y[-1] - exact).max() for dt in dts]
        assert order - 0.2 < observed_order(dts, errs) < order + 0.6, (method, errs)
    _agree(prob, "ETDRK4", dt=0.05)


def _nls(n=256, ell=40.0, a=1.0):
    """The focusing nonlinear Schrödinger equation ψ_t = (i/2) ψ_xx + i|ψ|²ψ on a periodic box and its bright
    soliton ψ = a sech(a x) e^{i a² t/2} (Zakharov & Shabat 1972; exact on the line, to e^{-a ℓ/2} here)."""
    x = ell * (np.arange(n) / n - 0.5)
    psi = sk.field("psi", n, complex=True)
    model = sk.FieldODE(psi, linear=sk.fourier(n, ell, lambda k: -0.5j * k**2),
                        nonlinear=sp.I * psi * sp.Abs(psi) ** 2)
    return model, (lambda t: a / np.cosh(a * x) * np.exp(0.5j * a**2 * t))


def test_the_nls_soliton_at_order_four_fixed_and_to_its_tolerance_adaptive():
    """ETDRK4 and Krogstad converge at order 4 on the soliton (a full-FFT complex symbol, N = i|ψ|²ψ through Re and
    Im); the compiled kernel takes the numpy driver's steps, fixed and adaptive (complex φ of each attempted step
    in the kernel), and adaptive ETDRK3 meets its tolerance."""
    model, exact = _nls()
    prob = sk.FieldProblem(model, exact(0.0), (0.0, 2.0))
    dts = [0.1, 0.05, 0.025]
    for method in ("ETDRK4", "Krogstad"):
        errs = [np.abs(sk.solve(prob, method, dt=dt, saveat=[2.0]).y[-1] - exact(2.0)).max() for dt in dts]
        assert 3.7 < observed_order(dts, errs) < 4.6 and errs[-1] < 1e-7, (method, errs)
    _agree(prob, "ETDRK4", dt=0.1, saveat=np.linspace(0, 2, 5))
    sol = _agree(prob, "ETDRK3", agree=1e-10, rtol=1e-8, atol=1e-8, saveat=[1.0, 2.0])
    assert np.abs(sol.y[-1] - exact(2.0)).max() < 1e-7, sol.stats


def test_exponential_rosenbrock_and_two_species_on_complex_fields():
    """Exprb32 on the soliton (N's Jacobian by sympy through Re and Im: ∂(i|ψ|²ψ) is not complex-linear) converges
    at order 3; two species with a polarisation angle θ (the Manakov system, ψ_j' = (i/2) ψ_j'' + i(|ψ_1|² +
    |ψ_2|²) ψ_j) carry the scalar soliton cos θ, sin θ times itself."""
    model, exact = _nls(n=64, ell=24.0)
    prob = sk.FieldProblem(model, 1.3 * exact(0.0), (0.0, 1.0))     # not the soliton: a breathing pulse
    reference = sk.solve(prob, "ETDRK4", dt=0.005, saveat=[1.0]).y[-1]    # the same semi-discretisation
    dts = [0.1, 0.05, 0.025]
    errs = [np.abs(sk.solve(prob, "Exprb32", dt=dt, saveat=[1.0]).y[-1] - reference).max() for dt in dts]
    assert 2.7 < observed_order(dts, errs) < 3.6, errs
    n, ell, theta = 256, 40.0, 0.4
    p, q = sk.field("p", n, complex=True), sk.field("q", n, complex=True)
    L = sk.fourier(n, ell, lambda k: -0.5j * k**2)
    power = sp.Abs(p) ** 2 + sp.Abs(q) ** 2
    manakov = sk.FieldODE([p, q], linear=L, nonlinear=[sp.I * power * p, sp.I * power * q])
    _, scalar = _nls(n, ell)
    two = sk.FieldProblem(manakov, np.stack([np.cos(theta) * scalar(0.0), np.sin(theta) * scalar(0.0)]), (0.0, 2.0))
    sol = _agree(two, "ETDRK4", dt=0.025, saveat=[2.0])
    assert sol.y.shape == (1, 2, n)
    np.testing.assert_allclose(sol.y[-1], np.stack([np.cos(theta), np.sin(theta)])[:, None] * scalar(2.0), atol=1e-7)


def test_complex_bases_in_two_dimensions_and_boxes():
    """Plane waves of the 2-D NLS, ψ = A e^{i(k·x − ωt)}, ω = |k|²/2 − |A|² (fftn of a complex field, N = i|ψ|²ψ
    constant in modulus); the Schrödinger equation ψ_t = (i/2) Δ_h ψ in a Dirichlet box (the DST-I basis of the
    complexified Laplacian, 1-D by its matrices, 2-D by scipy.fft) and in a Neumann box (DCT-I): an eigenmode
    only turns, e^{i μ t/2}, exactly at any step."""
    shape, A = (16, 12), 0.6
    X, Y = np.meshgrid(*(2 * np.pi * np.arange(n) / n for n in shape), indexing="ij")
    kx, ky = 2, -1
    psi = sk.field("psi", shape, complex=True)
    model = sk.FieldODE(psi, linear=sk.fourier(shape, 2 * np.pi, lambda a, b: -0.5j * (a**2 + b**2)),
                        nonlinear=sp.I * psi * sp.Abs(psi) ** 2)
    omega = (kx**2 + ky**2) / 2 - A**2
    wave = lambda t: A * np.exp(1j * (kx * X + ky * Y - omega * t))       # noqa: E731
    sol = _agree(sk.FieldProblem(model, wave(0.0), (0.0, 1.0)), "ETDRK4", dt=0.05, saveat=[1.0])
    np.testing.assert_allclose(sol.y[-1], wave(1.0), atol=5e-7)     # ETDRK4's error at h = 0.05: 1.4e-7
    for shape, bc in (((40,), "dirichlet"), ((9, 7), "dirichlet"), ((10, 6), "neumann")):
        h = 1.0 / (shape[0] + 1)
        lap = sk.laplacian(shape, h, bc)
        z = sk.field("z", shape, complex=True)
        dirichlet = bc == "dirichlet"
        grids = np.meshgrid(*[np.arange(1, n + 1) if dirichlet else np.arange(n) for n in shape], indexing="ij")
        theta = [np.pi / (n + 1) if dirichlet else np.pi / (n - 1) for n in shape]      # the first mode's angles
        mode = np.prod([(np.sin if dirichlet else np.cos)(th * g) for th, g in zip(theta, grids)], axis=0)
        mu = sum((2 * np.cos(th) - 2) / h**2 for th in theta)
        prob = sk.FieldProblem(sk.FieldODE(z, linear=0.5j * lap), mode * (1 + 0.5j), (0.0, 0.3))
        sol = _agree(prob, "ETDRK4", dt=0.1, saveat=[0.3])
        np.testing.assert_allclose(sol.y[-1], np.exp(0.5j * mu * 0.3) * mode * (1 + 0.5j), atol=1e-12)
        assert f"the c{'dst' if bc == 'dirichlet' else 'dct'} basis" in sk.inspect(prob, "ETDRK4")


def test_complex_field_mistakes_are_named():
    u, z = sk.field("u", 8), sk.field("z", 8, complex=True)
    L = sk.fourier(8, 1.0, lambda k: -k**2)
    with pytest.raises(sk.ModelError, match="all real or all complex"):
        sk.FieldODE([u, z], linear=L)
    with pytest.raises(sk.ModelError, match="complex=True"):
        sk.FieldODE(u, linear=sk.diagonal(np.full(8, -1 + 1j)))
    with pytest.raises(sk.ModelError, match="inside the nonlinearity is not a real operator"):   # in N: real
        sk.FieldODE(z, linear=L, nonlinear=sk.diagonal(np.full(8, 1j))(z))
    with pytest.raises(sk.ModelError, match="complex multiple"):
        (1 + 1j) * sk.matrix(8, np.eye(8))
    for not_real in (sk.fourier(8, 1.0, lambda k: -0.5j * k**2), 1j * sk.laplacian(8, 0.1), (1 + 1j) * L):
        with pytest.raises(sk.ModelError, match="complex=True"):   # symbol(-k) != conj(symbol(k)): irfft would hide it
            sk.FieldODE(u, linear=not_real)
        with pytest.raises(sk.ModelError, match="not a real operator.*sp.I"):   # in a complex field's N too (Re, Im apart)
            sk.FieldODE(z, linear=L, nonlinear=not_real(z))
    x = np.arange(8) * 2 * np.pi / 8
    np.testing.assert_allclose((1j * sk.fourier(8, 2 * np.pi, lambda k: k)).runtime.apply(np.sin(x)), np.cos(x),
                               atol=1e-14)                        # i times an odd symbol is a real operator again
    np.testing.assert_allclose((L / 2j).complexified.eigenvalues, L.complexified.eigenvalues / 2j)
    with pytest.raises(sk.ModelError, match="complex=True"):
        sk.FieldODE(u, nonlinear=u * sp.Symbol("C"), data={sp.Symbol("C"): np.full(8, 1j)})
    with pytest.raises(sk.ModelError, match="complex=True"):
        sk.FieldODE(u, nonlinear=sp.I * u)
    with pytest.raises(sk.ModelError, match="must be real"):
        sk.matrix(8, 1j * np.eye(8))
    B = sp.Symbol("B")
    with pytest.raises(sk.ModelError, match="given twice"):
        sk.FieldODE(z, nonlinear=B * z + sp.Symbol("B_re"), data={B: np.full(8, 1j), sp.Symbol("B_re"): np.ones(8)})
    g = sk.params("g")
    with pytest.raises(ValueError, match="real number"):
        sk.FieldProblem(sk.FieldODE(z, linear=L, nonlinear=g * z), np.ones(8), (0, 1), params={"g": 1 + 1j})
    model = sk.FieldODE(u, linear=L, nonlinear=-u**3)
    with pytest.raises(ValueError, match="complex=True"):
        sk.FieldProblem(model, np.ones(8) * 1j, (0, 1))
    with pytest.raises(ValueError, match="shape"):
        sk.FieldProblem(sk.FieldODE(z, linear=L), np.ones((2, 8)), (0, 1))
    real_on_complex = sk.FieldProblem(sk.FieldODE(z, linear=L, nonlinear=sp.conjugate(z) * 0.1),
                                      np.exp(2j * np.pi * np.arange(8) / 8), (0, 1))
    sol = sk.solve(real_on_complex, "ETDRK4", dt=0.1)     # a real operator acts on Re and Im apart
    assert sol.retcode == "Success" and sol.y.dtype == np.complex128


def test_a_jacobian_that_is_not_finite_gives_a_retcode():
    """|z| z has a 0/0 in sympy's Jacobian (re²/|z|) where the field is exactly 0: exponential Rosenbrock's φ-actions
    of a non-finite J̃ give the Unstable retcode, fixed and adaptive, instead of scipy's ValueError."""
    z, x = sk.field("z", 32, complex=True), 2 * np.pi * np.arange(32) / 32
    model = sk.FieldODE(z, linear=sk.fourier(32, 2 * np.pi, lambda k: -0.5j * k**2), nonlinear=-sp.Abs(z) * z)
    prob = sk.FieldProblem(model, np.sin(x) + 0j, (0.0, 1.0))
    assert sk.solve(prob, "Exprb32", dt=0.01).retcode == "Unstable"
    assert sk.solve(prob, "Exprb32", rtol=1e-6).retcode == "Unstable"
    assert sk.solve(prob, "ETDRK4", dt=0.01).retcode == "Success"        # no Jacobian: fine


def test_jacobians_of_sign_and_of_real_products_of_conjugates():
    """sign(u) in N: its DiracDelta derivative is 0 almost everywhere, so Exprb32 runs (it used to fail in
    lambdify) and matches ETDRK4 on u_t = 0.1 u_xx − sign(u) u² (= −u|u|, C¹); z² conj(z)³, whose derivative
    sympy leaves as a complex-typed real expression, gives no ComplexWarning and matches ETDRK4 too."""
    import warnings
    n = 32
    x = 2 * np.pi * np.arange(n) / n
    u, z = sk.field("u", n), sk.field("z", n, complex=True)
    cases = [(sk.FieldProblem(sk.FieldODE(u, linear=0.1 * sk.laplacian(n, 2 * np.pi / n, "periodic"),
                                          nonlinear=-sp.sign(u) * u**2), np.sin(x), (0.0, 1.0)), 1e-6),
             (sk.FieldProblem(sk.FieldODE(z, linear=sk.fourier(n, 2 * np.pi, lambda k: -0.5j * k**2),
                                          nonlinear=0.1 * z**2 * sp.conjugate(z)**3), 0.5 * np.exp(1j * x), (0.0, 1.0)),
              1e-10)]
    for prob, agree in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = sk.solve(prob, "Exprb32", dt=1 / 64, saveat=[1.0]).y[-1]
        want = sk.solve(prob, "ETDRK4", dt=1 / 256, saveat=[1.0]).y[-1]
        assert np.abs(got - want).max() < agree, np.abs(got - want).max()
