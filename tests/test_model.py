"""The symbolic front end: automatic split, structures, noise shapes, and model errors."""
import numpy as np
import pytest
import sympy as sp

import sdekit as sk


def test_design_example_split():
    y = sk.states("y", 4)
    k = sk.params("k")
    net = sk.MLP("f", [4, 32, 32, 4], activation="tanh")
    A = sp.diag(-1, -2, -3, -4)
    model = sk.SDE(y, drift=k * A * y + net(y), diffusion=sp.Rational(1, 10), noise="diagonal")
    assert model.linear == k * A
    assert model.nonlinear == net(y)
    assert model.affine == sp.zeros(4, 1)
    assert model.noise == "diagonal" and model.additive
    assert model.linear_structure == "diagonal"
    assert model.params == ("k",) and list(model.nets) == ["f"]


def test_split_rules():
    y = sk.states("y", 3)
    a = sk.params("a")
    t = sk.t
    drift = sp.Matrix([
        -2 * y[0] + a * y[1] + sp.sin(t) + 3,     # linear + affine
        y[0] * y[1] - y[1],                        # nonlinear + linear
        sp.cos(t) * y[2] + a**2 * (y[0] + y[2]),   # t-dependent linear stays in N
    ])
    m = sk.ODE(y, drift)
    assert m.linear == sp.Matrix([[-2, a, 0], [0, -1, 0], [a**2, 0, a**2]])
    assert m.affine == sp.Matrix([sp.sin(t) + 3, 0, 0])
    assert m.nonlinear == sp.Matrix([0, y[0] * y[1], sp.cos(t) * y[2]])
    assert m.linear_structure == "dense"
    # the split is exact: L y + c + N == drift
    assert sp.simplify(m.linear * y + m.affine + m.nonlinear - drift) == sp.zeros(3, 1)


@pytest.mark.parametrize("L,structure", [
    (sp.zeros(2, 2), "zero"), (sp.diag(-3, -3), "scalar"), (sp.diag(-1, -3), "diagonal"),
    (sp.Matrix([[-1, 1], [0, -1]]), "dense"), (np.diag([2.0, 2.0]), "scalar"), (np.eye(2) + 1, "dense"),
])
def test_linear_structures(L, structure):
    y = sk.states("y", 2)
    assert sk.ODE(y, linear=L, nonlinear=sp.zeros(2, 1)).linear_structure == structure


def test_explicit_split_keeps_numeric_L_as_runtime_data():
    y = sk.states("y", 3)
    L = np.random.default_rng(0).normal(size=(3, 3))
    m = sk.ODE(y, linear=L, nonlinear=sp.Matrix([sp.sin(y[0]), 1, 0]))
    assert isinstance(m.linear, np.ndarray) and np.array_equal(m.linear, L)
    assert m.affine == sp.Matrix([0, 1, 0]) and m.nonlinear == sp.Matrix([sp.sin(y[0]), 0, 0])


def test_noise_shapes():
    y = sk.states("y", 2)
    assert sk.SDE(y, drift=-y, diffusion=0.3, noise="scalar").noise == "scalar"
    gen = sk.SDE(y, drift=-y, diffusion=sp.Matrix([[1, 0, 2], [0, 1, 1]]), noise="general")
    assert gen.form.noise_dim == 3
    mult = sk.SDE(y, drift=-y, diffusion=sp.Matrix([y[0], 1]))
    assert not mult.additive and mult.noise == "diagonal"


@pytest.mark.parametrize("build,match", [
    (lambda y: sk.ODE(y, sp.Matrix([y[0], y[1], y[0]])), "3 components but the state has 2"),
    (lambda y: sk.ODE(y, sp.Matrix([[y[0], 0], [0, y[1]]])), "must be a vector"),
    (lambda y: sk.ODE(y, sp.Matrix([sp.Symbol("q") * y[0], 0])), "declared with sdekit.params"),
    (lambda y: sk.ODE(y, linear=sp.Matrix([[y[0], 0], [0, 1]]), nonlinear=sp.zeros(2, 1)), "depends on the state"),
    (lambda y: sk.ODE(y, linear=np.eye(3), nonlinear=sp.zeros(2, 1)), "must be 2x2"),
    (lambda y: sk.SDE(y, drift=-y, diffusion=sp.Matrix([1, 2, 3])), "length-2 vector"),
    (lambda y: sk.SDE(y, drift=-y, diffusion=1, noise="weird"), "noise must be one of"),
    (lambda y: sk.MLP("f", [3, 4, 2])(y), "takes 3 inputs"),
    (lambda y: sk.MLP("f", [2, 2], activation="swishy"), "unknown activation"),
    (lambda y: sk.SDE(y, drift=-y), "needs a diffusion"),
    (lambda y: sk.ODE(y, linear=sp.diag(sp.oo, 1), nonlinear=sp.zeros(2, 1)), "non-finite"),
    (lambda y: sk.ODE(y, sk.MLP("q", [2, 4, 2])(y) + sk.MLP("q", [2, 5, 2])(y)),
     r"two different networks are named 'q': MLP\('q', \[2, 4, 2\].*and MLP\('q', \[2, 5, 2\].*own name"),
    (lambda y: sk.ODE(y, sk.MLP("q", [2, 4, 2])(y) + sk.MLP("q", [2, 4, 2], activation="relu")(y)),
     "two different networks are named 'q'"),
])
def test_model_errors(build, match):
    with pytest.raises(sk.ModelError, match=match):
        build(sk.states("y", 2))


def test_constant_linear_part_stays_exact():
    """Lorenz's 8/3 shows as 8/3 in model.linear (the kernel still gets L as numeric runtime data)."""
    x = sk.states("x", 3)
    s, r, b = sp.Integer(10), sp.Integer(28), sp.Rational(8, 3)
    m = sk.ODE(x, sp.Matrix([s * (x[1] - x[0]), x[0] * (r - x[2]) - x[1], x[0] * x[1] - b * x[2]]))
    assert m.linear == sp.Matrix([[-10, 10, 0], [28, -1, 0], [0, 0, -b]]) and m.linear[2, 2] == -sp.Rational(8, 3)
    assert m.form.linear is None and np.allclose(m.form.linear_numeric[2, 2], -8 / 3)
    explicit = sk.ODE(x, linear=sp.diag(sp.Rational(-1, 3), -1, -2), nonlinear=sp.zeros(3, 1))
    assert explicit.linear[0, 0] == sp.Rational(-1, 3)


def test_params_may_be_keyed_by_their_symbols_and_other_keys_are_named():
    """``params={k: 2.0}`` with k = sk.params("k") is the same as ``{"k": 2.0}`` (it raised "'Param' object is not
    iterable", a helper's find); a key that is neither a name nor a param symbol is a ValueError naming it."""
    y = sk.states("y", 2)
    k = sk.params("k")
    model = sk.ODE(y, sp.Matrix([-k * y[0], y[0]]))
    by_symbol = sk.ODEProblem(model, y0=[1.0, 0.0], tspan=(0.0, 1.0), params={k: 2.0})
    assert by_symbol == sk.ODEProblem(model, y0=[1.0, 0.0], tspan=(0.0, 1.0), params={"k": 2.0})
    for bad in (3, sp.Symbol("k")):
        with pytest.raises(ValueError, match=r"keys are the parameters' names .* got (3|k)"):
            sk.ODEProblem(model, y0=[1.0, 0.0], tspan=(0.0, 1.0), params={bad: 1.0})
    with pytest.raises(ValueError, match="'k' is given twice"):
        sk.ODEProblem(model, y0=[1.0, 0.0], tspan=(0.0, 1.0), params={k: 2.0, "k": 3.0})
    u, a = sk.field("u", 8), sk.params("a")
    field = sk.FieldODE(u, linear=sk.laplacian(8, 1.0), nonlinear=a * u)
    assert sk.FieldProblem(field, np.zeros(8), (0.0, 1.0), params={a: 1.5}).params == {"a": 1.5}


def test_time_is_not_a_state():
    """sk.t among the states was integrated as a state while the right-hand side read it as time (a helper's
    find): a ModelError."""
    y = sk.states("y", 2)
    with pytest.raises(sk.ModelError, match="states contain sdekit.t"):
        sk.ODE(sp.Matrix([sk.t, y[1]]), sp.Matrix([2, -sk.t * y[1]]))
