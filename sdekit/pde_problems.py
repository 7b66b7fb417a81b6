"""Standard semilinear PDE test problems as field models (``sdekit.fields``), shared by the example, the
benchmark and the tests."""
from __future__ import annotations

import numpy as np
import sympy as sp

from .codegen.analysis import t as _t
from .fields import FieldODE, FieldProblem, field, fourier, laplacian


def allen_cahn(n: int = 256, eps: float = 0.01, T: float = 10.0):
    """(x, problem) of u_t = ε u_xx + u − u³ on (−1, 1), u(±1) = ±1, u0 = 0.53x + 0.47 sin(−1.5πx) (Trefethen,
    *Spectral Methods in MATLAB*, p. 34): n interior points, the Dirichlet second-difference stencil, the
    boundary values as the source ε/Δx² (−1, 0, ..., 0, 1) (the model's ``data``)."""
    dx = 2.0 / (n + 1)
    x = -1 + dx * np.arange(1, n + 1)
    c = np.zeros(n)
    c[0], c[-1] = -eps / dx**2, eps / dx**2
    u, C = field("u", n), sp.Symbol("C")
    model = FieldODE(u, linear=eps * laplacian(n, dx, "dirichlet"), nonlinear=u - u**3 + C, data={C: c})
    return x, FieldProblem(model, 0.53 * x + 0.47 * np.sin(-1.5 * np.pi * x), (0.0, T))


def kuramoto_sivashinsky(n: int = 128, T: float = 150.0):
    """(x, problem) of u_t = −u_xx − u_xxxx − (u²)_x / 2 on [0, 32π] periodic, u0 = cos(x/16)(1 + sin(x/16)),
    n Fourier modes (Kassam & Trefethen 2005, SIAM J. Sci. Comput. 26:1214, §6): L = k² − k⁴, d/dx = ik."""
    ell = 32 * np.pi
    x = ell * np.arange(n) / n
    u = field("u", n)
    Dx = fourier(n, ell, lambda k: 1j * k)
    model = FieldODE(u, linear=fourier(n, ell, lambda k: k**2 - k**4), nonlinear=-Dx(u**2) / 2)
    return x, FieldProblem(model, np.cos(x / 16) * (1 + np.sin(x / 16)), (0.0, T))


def hochbruck_ostermann(n: int = 199):
    """(x, problem, exact u(x, 1)) of Hochbruck & Ostermann's parabolic test (2005, SIAM J. Numer. Anal. 43:1069,
    §6): u_t = u_xx + 1/(1 + u²) + Φ(x, t) on (0, 1), Dirichlet, Φ such that u = x(1 − x)e^t solves the
    semi-discretised problem exactly (the 3-point stencil is exact for quadratics); n interior points."""
    dx = 1.0 / (n + 1)
    x = dx * np.arange(1, n + 1)
    u, X = field("u", n), sp.Symbol("X")
    exact = X * (1 - X) * sp.exp(_t)
    model = FieldODE(u, linear=laplacian(n, dx, "dirichlet"), data={X: x},
                     nonlinear=1 / (1 + u**2) + exact + 2 * sp.exp(_t) - 1 / (1 + exact**2))
    return x, FieldProblem(model, x * (1 - x), (0.0, 1.0)), x * (1 - x) * np.e
