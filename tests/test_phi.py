import mpmath
import numpy as np
import pytest
import sympy as sp

from sdekit.codegen.phi import closed_form, phi, phi_poly, resolvent, series_equal, z
from sdekit.kernels.linear import convolution_pair, convolution_residual, linear_value, phi_dense, phi_scalar

mpmath.mp.dps = 40


def phi_exact(k, x):
    x = mpmath.mpf(x)
    if abs(x) < 2:
        return mpmath.nsum(lambda j: x**j / mpmath.factorial(j + k), [0, mpmath.inf])
    return (mpmath.exp(x) - sum(x**j / mpmath.factorial(j) for j in range(k))) / x**k


ZS = [0.0, 1e-12, -1e-8, 3e-5, -0.3, 0.99, -1.0, 1.999, -2.0, -2.5, 4.0, -30.0, -700.0, 50.0]


@pytest.mark.parametrize("k", range(5))
def test_phi_scalar_is_accurate_everywhere(k):
    got = phi_scalar(np.array(ZS), 4)[k]
    for zz, g in zip(ZS, got):
        want = float(phi_exact(k, zz))
        assert abs(g - want) <= 3e-15 * abs(want) + 1e-300, (k, zz, g, want)


def test_phi_dense_matches_diagonal_and_similarity():
    rng = np.random.default_rng(0)
    lam = np.array([-3.0, -0.2, 1e-9, 1.5])
    V = rng.normal(size=(4, 4))
    Z = V @ np.diag(lam) @ np.linalg.inv(V)
    dense = phi_dense(Z, 3)
    scal = phi_scalar(lam, 3)
    for k in range(4):
        assert np.allclose(dense[k], V @ np.diag(scal[k]) @ np.linalg.inv(V), rtol=1e-10, atol=1e-12)


def test_symbolic_phi():
    assert phi(3, 0) == sp.Rational(1, 6)
    x = sp.Symbol("x")
    assert sp.simplify(closed_form(phi(2, x)) - (sp.exp(x) - 1 - x) / x**2) == 0
    # recurrence φ_{k+1}(z) = (φ_k(z) - 1/k!)/z, as series
    assert series_equal(z * phi(3, z), phi(2, z) - sp.Rational(1, 2))
    # doubling identity (methods.md §1.1) for k = 1, 2
    assert series_equal(phi(1, 2 * z), (phi(0, z) * phi(1, z) + phi(1, z)) / 2)
    assert series_equal(phi(2, 2 * z), (phi(0, z) * phi(2, z) + phi(1, z) + phi(2, z)) / 4)
    assert not series_equal(phi(2, 2 * z), phi(2, z))


def test_phi_poly_data():
    poly = phi_poly(phi(1, z / 2) * (phi(0, z / 2) - 1) / 2)
    assert {(float(w), atoms) for w, atoms in poly} == {
        (-0.5, (("phi", 1, 0.5),)), (0.5, (("phi", 0, 0.5), ("phi", 1, 0.5)))}
    res = phi_poly(2 * resolvent(z / 2) - resolvent(z) ** 2)
    assert {(float(w), atoms) for w, atoms in res} == {(2.0, (("res", 0.5),)), (-1.0, (("res", 1), ("res", 1)))}
    with pytest.raises(ValueError):
        phi_poly(sp.sin(z))


@pytest.mark.parametrize("a,b", [(0.0, 0.0), (1e-7, 1e-7), (-0.3, -0.01), (-0.9, 0.5), (-5.0, -5.0), (-400.0, -1.0)])
def test_convolution_pair_is_accurate(a, b):
    want = phi_exact(1, a + b) - phi_exact(1, a) * phi_exact(1, b)
    got = convolution_pair(np.array(a), np.array(b))
    assert abs(got - float(want)) <= 1e-13 * abs(float(want)) + 1e-30


def test_convolution_identity_symbolically():
    """φ_1(2z) − φ_1(z)² = z²φ_1(z)(φ_2(z)/2 − φ_3(z)): the conditional variance of SETD1."""
    assert series_equal(phi(1, 2 * z) - phi(1, z) ** 2, z**2 * phi(1, z) * (phi(2, z) / 2 - phi(3, z)), order=14)


def test_convolution_residual_matches_quadrature():
    """S Sᵀ = ∫_0^h (e^{sL} − φ_1(hL)) G Gᵀ (…)ᵀ ds: dense (Van Loan) and diagonal paths vs quadrature."""
    h = 0.7
    lam = np.array([-2.0, -0.5, -9.0])
    g = np.array([0.3, 1.0, 0.5])
    s = np.linspace(0, h, 20001)
    P1 = phi_scalar(h * lam, 1)[1]
    for noise in ("diagonal", "scalar"):
        GG = np.diag(g * g) if noise == "diagonal" else np.outer(g, g)
        M = np.exp(s[:, None] * lam[None, :]) - P1  # (ns, d)
        integrand = M[:, :, None] * GG[None] * M[:, None, :]
        R_quad = np.trapezoid(integrand, s, axis=0)
        for structure, Lval in (("diagonal", lam[:, None]), ("dense", np.diag(lam)[None])):
            layout = "elementwise" if structure == "diagonal" and noise == "diagonal" else "dense"
            S = convolution_residual(structure, layout, Lval, g[:, None], noise, h)
            R = np.diag(S[:, 0] ** 2) if layout == "elementwise" else S[0] @ S[0].T
            assert np.allclose(R, R_quad, rtol=1e-6, atol=1e-10), (noise, structure)


def test_linear_value_layouts():
    assert linear_value("scalar", np.eye(3) * -2.0, 3).shape == (1, 1)
    assert linear_value("diagonal", [np.array([1.0, 2.0]), 3.0], 2).shape == (2, 2)
    assert linear_value("dense", [[1.0, np.arange(5.0)], [0.0, 1.0]], 2).shape == (5, 2, 2)


def test_phi_dense_survives_scipy_expm_tiny_entry_bug():
    """scipy 1.17 expm gets [[−5.2,0,−1.3],[0,1e-20,1.3],[0,0,0]] wrong; phi_dense must not."""
    Z = np.diag([-5.2, 1.3e-20, -0.5])
    Z[0, 2] = 0.7
    dense = phi_dense(Z, 2)
    assert np.allclose(Z @ dense[1], dense[0] - np.eye(3), atol=1e-14)
    assert np.allclose(np.diag(dense[2]), phi_scalar(np.diag(Z), 2)[2], rtol=1e-13)


def test_tableaus_validate_themselves():
    from sdekit.codegen.tables import ETDRK4, RK4
    from sdekit.codegen.tableau import ButcherTableau, ExponentialTableau

    assert ETDRK4.at_zero() == ButcherTableau(A=RK4.A, b=RK4.b, c=RK4.c, order=4, name="ETDRK4(z=0)")
    with pytest.raises(ValueError, match="row 1 of A sums"):
        ButcherTableau(A=((0, 0), (sp.Rational(1, 3), 0)), b=(0, 1), c=(0, sp.Rational(1, 2)), order=2, name="bad")
    with pytest.raises(ValueError, match="sum to"):
        ButcherTableau(A=((0, 0), (1, 0)), b=(1, 1), c=(0, 1), order=2, name="bad")
    with pytest.raises(ValueError, match="above the diagonal"):
        ButcherTableau(A=((0, 1), (1, 0)), b=(0, 1), c=(1, 1), order=2, name="implicit")
    # an ETDRK4 with a wrong weight (b1 = φ1 − 3φ2 + 3φ3) is caught by Σ b_i = φ_1
    b = list(ETDRK4.b)
    b[0] = phi(1, z) - 3 * phi(2, z) + 3 * phi(3, z)
    with pytest.raises(ValueError, match="Σ_i b_i"):
        ExponentialTableau(A=ETDRK4.A, b=tuple(b), c=ETDRK4.c, order=4, stiff_order=2, name="bad")
    A = [list(r) for r in ETDRK4.A]
    A[3][2] = phi(1, z / 2) / 2
    with pytest.raises(ValueError, match="a_3j"):
        ExponentialTableau(A=tuple(map(tuple, A)), b=ETDRK4.b, c=ETDRK4.c, order=4, stiff_order=2, name="bad")


def test_complex_phi_matches_high_precision():
    """kernels.linear.phi_complex (complex Fourier symbols) against mpmath at 120 digits: random points inside and
    outside the series radius, the imaginary axis (dispersion), near 0 and on the radius; 1e-13 relative."""
    from sdekit.kernels.linear import phi_complex
    rng = np.random.default_rng(0)
    zs = np.concatenate([3 * rng.normal(size=60) + 3j * rng.normal(size=60), 1j * np.linspace(-60, 60, 40),
                         -np.linspace(0, 40, 9) + 20j, [1e-6 + 1e-6j, 4.999 + 0.1j, 5.001j, -30 + 1e-3j]])
    got = phi_complex(zs, 5)
    with mpmath.workdps(120):
        for k in range(6):
            for z, value in zip(zs, got[k]):
                w = mpmath.mpc(z.real, z.imag)
                want = complex((mpmath.e**w - sum(w**j / mpmath.factorial(j) for j in range(k))) / w**k)
                assert abs(value - want) <= 1e-13 * abs(want), (k, z, value, want)
    real = np.linspace(-20, 20, 11)
    assert all(np.array_equal(a, b) for a, b in zip(phi_scalar(real + 0j, 3), phi_scalar(real, 3)))  # real stays real
