"""A fuzz of the front end (issue 18 item 6): malformed models, shapes, dtypes, non-finite initial
values, bad dt and tspan, unknown options and misspelt keywords, non-finite or mis-shaped weights,
missing parameters.  Every case either solves — and then a trajectory is Success only if all its
saved values are finite — or raises ValueError / sdekit.ModelError (an unknown keyword's
KeywordError is a ValueError and, as Python has it, a TypeError) whose message names what is wrong.  Never a Numba typing error, a
crash, or a silent NaN solution with retcode Success."""
import numpy as np
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sdekit as sk
from numba.core.errors import NumbaError

y = sk.states("y", 2)
k = sk.params("k")
NET = sk.MLP("f", [2, 4, 2])
GOOD_W = [(np.full((4, 2), 0.3), np.zeros(4)), (np.full((2, 4), -0.2), np.ones(2))]

#: the valid baseline: an SDE and an ODE with a parameter and a network
BASE_DRIFT = sp.Matrix([-k * y[0] + sp.sin(y[1]), -2 * y[1]]) + NET(y)
#: built once: a model caches its generated kernels, so the cases cost a solve, not a code generation
MODELS = {"sde": sk.SDE(y, drift=BASE_DRIFT, diffusion=sp.Rational(1, 4)), "ode": sk.ODE(y, BASE_DRIFT)}

bad_numbers = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-300, 1e300, "0.1", None, 1j, [0.1, 0.2], True])
any_value = st.one_of(bad_numbers, st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3),
                      st.lists(st.floats(-2, 2), max_size=3), st.text(max_size=3))

edge = st.floats(allow_nan=True, allow_infinity=True)
FIELD = {  # per input, values of its own kind: valid, extreme, non-finite
    "y0": st.lists(st.one_of(st.floats(-1e3, 1e3), edge), min_size=2, max_size=2),
    "tspan": st.tuples(st.floats(-3, 3), st.one_of(st.floats(-3, 3), edge)),
    "dt": st.one_of(st.floats(1e-3, 2.0), edge),
    "params": st.one_of(st.floats(-50, 50), st.lists(st.floats(-5, 5), min_size=5, max_size=5)),
    "saveat": st.lists(st.floats(-0.5, 1.5), max_size=4),
    "tolerance": st.one_of(st.floats(1e-12, 1.0), st.lists(st.floats(0, 1), min_size=2, max_size=2)),
    "ensemble": st.integers(-2, 40),
}

MODEL_BREAKS = {   # what a user may get wrong in the model itself
    "drift-size": lambda: sk.ODE(y, sp.Matrix([y[0]])),
    "unknown-symbol": lambda: sk.ODE(y, sp.Matrix([sp.Symbol("z") * y[0], y[1]])),
    "not-sympy": lambda: sk.ODE(y, "y0 + 1"),
    "noise-shape": lambda: sk.SDE(y, drift=-y, diffusion=sp.Matrix([1, 2, 3]), noise="diagonal"),
    "unknown-noise": lambda: sk.SDE(y, drift=-y, diffusion=sp.Rational(1, 2), noise="pink"),
    "net-inputs": lambda: sk.ODE(y, NET(sp.Matrix([y[0], y[1], y[0]]))),
    "state-in-linear": lambda: sk.ODE(y, linear=sp.Matrix([[y[0], 0], [0, 1]]), nonlinear=sp.zeros(2, 1)),
    "no-diffusion": lambda: sk.SDE(y, drift=-y),
}

EXPECTED = (ValueError, sk.ModelError)


def _weights(choice, value):
    W = [(a.copy(), b.copy()) for a, b in GOOD_W]
    if choice == "nan":
        W[0][0][0, 0] = np.nan
    elif choice == "shape":
        W[0] = (np.ones((4, 3)), W[0][1])
    elif choice == "layers":
        W = W[:1]
    elif choice == "value":
        W = value
    return {"f": W}


@st.composite
def cases(draw):
    """A baseline solve with up to two things changed."""
    case = {"model": draw(st.sampled_from(sorted(MODELS))), "breaks": {}}
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["y0", "tspan", "dt", "params", "weights", "option", "keyword", "method",
                                     "saveat", "tolerance", "model", "ensemble"]))
        if what == "weights":
            case["breaks"][what] = (draw(st.sampled_from(["nan", "shape", "layers", "value"])), draw(any_value))
        elif what == "model":
            case["breaks"][what] = draw(st.sampled_from(sorted(MODEL_BREAKS)))
        elif what == "keyword":
            case["breaks"][what] = draw(st.sampled_from(["dtt", "rtoll", "seeds", "save_at", "method_", "backendd"]))
        elif what == "method":
            case["breaks"][what] = draw(st.sampled_from(["RK5", "em", "", "SRA1", "RK4", "Tsit5", None, 3]))
        elif what == "option":
            case["breaks"][what] = (draw(st.sampled_from(["backend", "dtype", "controller", "maxiters", "dtmax",
                                                          "tstops", "progress", "ts", "retries",
                                                          "store_format"])), draw(any_value))
        elif what in FIELD:                   # values of the right kind, extreme or broken, and plain garbage
            case["breaks"][what] = draw(st.one_of(FIELD[what], any_value))
        else:
            case["breaks"][what] = draw(any_value)
    case["adaptive"] = draw(st.booleans())
    # Numba for fixed steps (two kernels to compile); adaptive input checks are the same code on either
    case["backend"] = "numpy" if case["adaptive"] else draw(st.sampled_from(["numpy", "numba"]))
    return case


def _run(case):
    b = case["breaks"]
    model = MODEL_BREAKS[b["model"]]() if "model" in b else MODELS[case["model"]]
    stochastic = isinstance(model, sk.SDE)
    problem_type = sk.SDEProblem if stochastic else sk.ODEProblem
    params = {"k": b["params"]} if "params" in b else {"k": 1.0}
    if "params" in b and b["params"] is None:
        params = {}
    nets = _weights(*b["weights"]) if "weights" in b else {"f": GOOD_W}
    prob = problem_type(model, y0=b.get("y0", [0.5, -0.5]), tspan=b.get("tspan", (0.0, 1.0)), params=params,
                        nets=nets)
    target = sk.Ensemble(prob, n=b["ensemble"], seed=1) if "ensemble" in b else sk.Ensemble(prob, n=5, seed=1)
    method = b.get("method", ("SRA1" if case["adaptive"] else "EM") if stochastic else
                   ("Tsit5" if case["adaptive"] else "RK4"))
    kw = {"backend": case["backend"]}
    if "dt" in b:
        kw["dt"] = b["dt"]
    elif not case["adaptive"]:
        kw["dt"] = 0.05
    else:
        kw["maxiters"] = 2000      # a span of 1e300 ends in MaxIters, not after 10^5 numpy steps
    if "tolerance" in b:
        kw["rtol"] = b["tolerance"]
    if "saveat" in b:
        kw["saveat"] = b["saveat"]
    if "option" in b:
        kw[b["option"][0]] = b["option"][1]
    if "keyword" in b:
        kw[b["keyword"]] = 1
    return sk.solve(target, method, **kw)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_every_bad_input_solves_honestly_or_is_named(case):
    try:
        sol = _run(case)
    except EXPECTED as e:           # an unknown keyword too: sdekit.problem.KeywordError is both TypeError and ValueError
        message = str(e)
        assert message and not isinstance(e, NumbaError), (case, message)
        assert not any(x in message for x in ("Traceback", "TypingError", "No implementation of function")), (case, message)
        return
    y = np.asarray(sol.y)
    codes = np.asarray(sol.retcodes) if sol.retcodes is not None else np.array([sol.retcode])
    finite = np.all(np.isfinite(y.reshape(y.shape[0], -1)), axis=1) if y.ndim == 3 else np.array([np.all(np.isfinite(y))])
    assert not np.any((codes == "Success") & ~finite), (case, codes, y)


def test_step_bounds_that_are_not_numbers_are_named():
    """Found by the fuzz once retries/store_format joined its options: dtmax=[0.0] was a TypeError
    ('>' between list and int) from the adaptive options."""
    import pytest
    ens = sk.Ensemble(sk.ODEProblem(MODELS["ode"], y0=[0.5, -0.5], tspan=(0.0, 1.0), params={"k": 1.0},
                                    nets={"f": GOOD_W}), n=3, seed=1)
    for name in ("dt", "dtmin", "dtmax"):
        for value in ([0.0], "0.1", True, np.array([0.1]), 1j):
            with pytest.raises(ValueError, match=f"{name} must be finite and > 0"):
                sk.solve(ens, "Tsit5", backend="numpy", rtol=1e-3, **{name: value})
    assert sk.solve(ens, "Tsit5", backend="numpy", dtmax=np.float64(0.5), dtmin=np.array(1e-6)).retcode == "Success"
