"""sdekit: symbolic-numeric ODE/SDE engine for semilinear problems ``dy = (L y + N(y,t)) dt + G dW``.

Quick start::

    import numpy as np, sympy as sp, sdekit as sk
    y = sk.states("y", 4); k = sk.params("k")
    net = sk.MLP("f", [4, 32, 32, 4], activation="tanh")
    model = sk.SDE(y, drift=k * sp.diag(-1, -2, -3, -4) * y + net(y), diffusion=sp.Rational(1, 10))
    prob = sk.SDEProblem(model, y0=np.ones(4), tspan=(0.0, 1.0), params={"k": 1.0}, nets={"f": weights})
    sol = sk.solve(sk.Ensemble(prob, n=4096, seed=0), method="SETD1", dt=1e-2)
"""
from sdekit.codegen.errors import ModelError
from sdekit.model import ODE, SDE
from sdekit.problem import Ensemble, KeywordError, ODEProblem, SDEProblem
from sdekit.catalogue import methods
from sdekit.solution import Solution
from sdekit.solve import brownian_tree, inspect, solve
from sdekit.symbols import MLP, External, params, states, t
from sdekit import diffusion
from sdekit.fields import FieldODE, FieldProblem, diagonal, field, fourier, laplacian, matrix

__version__ = "0.2.0"
__all__ = ["ModelError", "KeywordError", "brownian_tree", "inspect", "ODE", "SDE", "ODEProblem", "SDEProblem",
           "Ensemble", "Solution", "solve", "methods",
           "MLP", "External", "params", "states", "t", "diffusion",
           "field", "fourier", "laplacian", "diagonal", "matrix", "FieldODE", "FieldProblem"]
