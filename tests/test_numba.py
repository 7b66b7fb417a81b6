"""The fused Numba kernel runs the same step scheme as the numpy reference.

Agreement is to 1e-12 relative in float64 (the kernel contracts to FMA and uses its own
tanh/Box–Muller, so bits differ from numpy's; the schemes are the same).  Within the
Numba backend results are bitwise reproducible across thread counts, ensemble sizes and
chunks.
"""
import math
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import sympy as sp

import sdekit as sk
from sdekit.codegen.methods import CATALOGUE, get_method
from sdekit.kernels.cache import load_module

SIZES = [3, 16, 16, 3]
RTOL = 1e-12


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(b, a)) / np.sqrt(a), 0.1 * rng.normal(size=b)) for a, b in zip(SIZES[:-1], SIZES[1:])]


def neural(stochastic, structure="diagonal", noise="diagonal"):
    """A neural model y' = k L y + f(y) + c(t) (+ 0.2 dW), f an MLP 3-16-16-3."""
    y = sk.states("y", 3)
    k = sk.params("k")
    net = sk.MLP("f", SIZES)
    forcing = net(y) + sp.Matrix([sp.sin(sk.t), 0, 0])
    L = {"diagonal": sp.diag(-1, -5, -20), "scalar": -3 * sp.eye(3),
         "dense": sp.Matrix([[-2, 1, 0], [-1, -3, 0.5], [0, -0.5, -4]])}[structure]
    drift = k * L * y + forcing
    if stochastic:
        G = sp.Matrix([[0.2, 0], [0, 0.1], [0.1, 0.3]]) if noise == "general" else sp.Rational(1, 5)
        model = sk.SDE(y, drift=drift, diffusion=G, noise=noise)
        P = sk.SDEProblem
    else:
        model, P = sk.ODE(y, drift), sk.ODEProblem
    return P(model, y0=[0.5, -0.2, 0.1], tspan=(0.0, 1.0), params={"k": 1.0}, nets={"f": _weights()})


CASES = [  # method, stochastic, structure, noise, dt
    ("Euler", False, "diagonal", None, 2.0**-5),
    ("RK4", False, "dense", None, 2.0**-4),
    ("ETD1", False, "scalar", None, 0.1),
    ("ETDRK4", False, "diagonal", None, 2.0**-3),
    ("ETDRK4", False, "dense", None, 2.0**-3),
    ("EM", True, "diagonal", "diagonal", 2.0**-5),
    ("EM", True, "dense", "general", 0.1),
    ("SETD1", True, "diagonal", "diagonal", 2.0**-4),
    ("SETD1", True, "diagonal", "scalar", 0.07),
    ("SETD1", True, "dense", "diagonal", 2.0**-3),
]


@pytest.mark.parametrize("method,stochastic,structure,noise,dt", CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CASES])
def test_numba_agrees_with_numpy(method, stochastic, structure, noise, dt, golden):
    prob = neural(stochastic, structure, noise or "diagonal")
    ens = sk.Ensemble(prob, n=150, seed=3)   # one full block of 128 + a padded one
    a = sk.solve(ens, method, dt=dt, backend="numba", saveat="steps")
    b = sk.solve(ens, method, dt=dt, backend="numpy", saveat="steps")
    golden("numba", a)
    golden("numpy", b)
    assert a.retcode == b.retcode == "Success"
    scale = np.max(np.abs(b.y))
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=RTOL * scale)
    assert a.stats == b.stats


_COVERED = {c[0] for c in CASES}
CATALOGUE_REST = [m.name for m in CATALOGUE if m.name not in _COVERED]


@pytest.mark.parametrize("method", CATALOGUE_REST)
def test_every_catalogue_method_runs_in_the_fused_kernel(method, golden):
    """Each remaining catalogue method, with the in-kernel MLP as N, agrees with numpy
    (L alternates diagonal/dense so both operator layouts are exercised)."""
    m = get_method(method)
    structure = "dense" if CATALOGUE_REST.index(method) % 2 else "diagonal"
    ens = sk.Ensemble(neural(m.stochastic, structure), n=130, seed=2)
    a = sk.solve(ens, method, dt=2.0**-4, backend="numba", saveat="steps")
    b = sk.solve(ens, method, dt=2.0**-4, backend="numpy", saveat="steps")
    golden("numba", a)
    golden("numpy", b)
    assert a.retcode == b.retcode == "Success"
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=RTOL * np.max(np.abs(b.y)))


def test_numba_bitwise_reproducible_across_threads_sizes_and_chunks():
    prob = neural(True)
    big = sk.Ensemble(prob, n=300, seed=5)       # 3 blocks of 128: both threads get work
    numba.set_num_threads(1)
    one = sk.solve(big, "SETD1", dt=2.0**-4)
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    two = sk.solve(big, "SETD1", dt=2.0**-4)
    np.testing.assert_array_equal(one.y, two.y)
    small = sk.solve(sk.Ensemble(prob, n=37, seed=5), "SETD1", dt=2.0**-4)
    np.testing.assert_array_equal(small.y, one.y[:37])
    chunk = sk.solve(big.chunk(101, 270), "SETD1", dt=2.0**-4)   # crosses block boundaries
    np.testing.assert_array_equal(chunk.y, one.y[101:270])


def test_numba_per_trajectory_params_and_unstable_lane(golden):
    prob = neural(True)
    ks = np.linspace(0.5, 2.0, 40)
    ks[7] = -1e306                              # L = k diag(-1, -5, -20) explodes: overflow
    Y0 = np.tile(prob.y0, (40, 1))
    p2 = sk.SDEProblem(prob.model, y0=prob.y0, tspan=prob.tspan, params={"k": ks}, nets=prob.nets)
    ens = sk.Ensemble(p2, y0=Y0, seed=1)
    a = sk.solve(ens, "EM", dt=2.0**-4, saveat="steps")
    b = sk.solve(ens, "EM", dt=2.0**-4, backend="numpy", saveat="steps")
    golden("numba", a)
    golden("numpy", b)
    assert a.retcodes[7] == b.retcodes[7] == "Unstable" and a.retcode == "Unstable"
    ok = np.arange(40) != 7
    assert np.all(a.retcodes[ok] == "Success")
    np.testing.assert_allclose(a.y[ok], b.y[ok], rtol=0, atol=RTOL * np.abs(b.y[ok]).max())


def test_grid_that_is_not_a_tree_point_agrees_with_numpy(golden):
    """dt = 0.3 on [0, 1] (steps 0.3, 0.3, 0.3, 0.1): step ends that are not coarse tree points are deep
    frontier moves; SETD1's per-step normals are keyed by the step index."""
    ens = sk.Ensemble(neural(True), n=130, seed=6)
    for method in ("EM", "SETD1"):
        a = sk.solve(ens, method, dt=0.3, saveat="steps")
        b = sk.solve(ens, method, dt=0.3, backend="numpy", saveat="steps")
        golden(f"{method}-numba", a)
        golden(f"{method}-numpy", b)
        np.testing.assert_allclose(a.y, b.y, rtol=0, atol=RTOL * np.abs(b.y).max())


def test_float32_kernel_stays_within_float32_accuracy():
    ens = sk.Ensemble(neural(True), n=64, seed=0)
    a = sk.solve(ens, "SETD1", dt=2.0**-5)
    b = sk.solve(ens, "SETD1", dt=2.0**-5, dtype=np.float32)
    assert b.y.dtype == np.float32
    np.testing.assert_allclose(b.y, a.y, rtol=0, atol=2e-5)


def test_methods_on_a_model_share_its_lane_functions():
    """The model's lane functions (rhs_block, noise/jac blocks) are a module of their own that every method's kernel
    imports: methods with the same right-hand side (f, or c + N for the exponential ones), float type and step
    shape share it, so it compiles once (a kernel loaded from the disk cache holds their code)."""
    import re
    prob = neural(False, "dense")

    def lanes(method, **kw):
        source = sk.inspect(prob, method, backend="numba", **kw)
        return re.search(r"LANES = r'{3}(.*?)'{3}", source, re.S).group(1)

    assert lanes("RK4") == lanes("Heun") == lanes("Tsit5") == lanes("DP5")          # f = L y + c + N
    assert lanes("ETDRK4") == lanes("ETD1") != lanes("RK4")                          # c + N
    assert lanes("RK4", dtype=np.float32) != lanes("RK4")
    assert lanes("Tsit5", adaptive=True) != lanes("Tsit5")
    assert "def rhs_block(" in lanes("RK4") and "def jac_block(" in lanes("Exprb43")


def test_a_float32_kernel_computes_in_float32():
    """The float32 kernel's stages, model and network run in float32: its LLVM IR has no double arithmetic (scalar
    or vector) and no float <-> double conversion (Python literals are float64 in Numba: ``10*x`` and ``0.161*h``
    ran in double, with a conversion at every store; the printer now writes ``f32(10)``, as the CUDA printer writes
    ``10.0F``).  An autonomous model (no time) with Integer, Rational and Float constants, integer and negative
    powers, π, a Piecewise and an MLP; fixed-step Tsit5 (Float tableau coefficients times h).  An SDE's drift, G and
    Milstein term (½ G'G (ΔW² − h)) too; its kernel keeps Philox, the normals and the tree in double, by design."""
    import re
    double = re.compile(r"= (?:f(?:mul|add|sub|div|rem)[a-z ]* (?:<\d+ x )?double|fpext |fptrunc )")
    single = re.compile(r"= f(?:mul|add|sub|div)[a-z ]* (?:<\d+ x )?float ")
    y = sk.states("y", 3)
    net = sk.MLP("f", [3, 4, 3], activation="sigmoid")
    N = sp.Matrix([10 * (y[1] - y[0]) + sp.sin(y[1]) / 3, sp.Float(0.25) * y[0] - y[1] ** 3 / 8 + sp.pi / (2 + y[2] ** 2),
                   sp.Piecewise((sp.exp(-y[0] ** 2), y[0] > 0), (1 - y[0] ** 2 / 2, True)) - sp.Rational(8, 3) * y[2]])
    nets = {"f": [(np.ones((4, 3)) / 3, np.zeros(4)), (np.ones((3, 4)) / 4, np.zeros(3))]}
    ode = sk.ODEProblem(sk.ODE(y, N + net(y) / 4), y0=[0.5, -0.2, 0.1], tspan=(0.0, 0.5), nets=nets)
    sde = sk.SDEProblem(sk.SDE(y, drift=N, diffusion=sp.Matrix([sp.cos(y[0]) / 10, y[1] / 5, sp.Rational(3, 10)]),
                               noise="diagonal"), y0=[0.5, -0.2, 0.1], tspan=(0.0, 0.5))
    for prob, method, functions in ((ode, "Tsit5", ("kernel", "rhs_block")),
                                    (sde, "Milstein", ("rhs_block", "noise_block", "milstein_block"))):
        sol = sk.solve(prob, method, dt=0.05, dtype=np.float32)
        assert sol.success and sol.y.dtype == np.float32
        module = load_module(sk.inspect(prob, method, backend="numba", dtype=np.float32), "numba")   # the one solve ran
        for name in functions:
            fn = getattr(module, name)
            (signature,) = fn.signatures
            ir = fn.inspect_llvm(signature)
            assert len(single.findall(ir)) > 4, name
            assert not double.findall(ir), (name, double.findall(ir)[:5])


def test_float32_kernel_with_float64_promoted_tanh_arguments():
    """In a float32 kernel Numba promotes ``y/2`` or ``0.5 * x`` (silu, sigmoid) to float64; tanh32
    must round its argument, not read float64 bits as float32 (review: it returned 0.333 for 0.5)."""
    y = sk.states("y", 2)
    net = sk.MLP("f", [2, 9, 17, 2], activation="silu")
    rng = np.random.default_rng(1)
    weights = [(rng.normal(size=(b, a)) / np.sqrt(a), 0.1 * rng.normal(size=b)) for a, b in zip([2, 9, 17], [9, 17, 2])]
    model = sk.ODE(y, sp.Matrix([-y[0] + sp.tanh(y[0] / 2), -y[1]]) + net(y))
    prob = sk.ODEProblem(model, y0=[0.7, -0.3], tspan=(0.0, 1.0), nets={"f": weights})
    ref = sk.solve(prob, "RK4", dt=2.0**-6, backend="numpy").y
    got = sk.solve(prob, "RK4", dt=2.0**-6, dtype=np.float32).y
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_tanh_error_bound(dtype):
    """The kernels' vectorisable tanh is within 4 ulp of np.tanh (float64: tanh64, float32: tanh32)."""
    from sdekit.kernels.numba_runtime import tanh32, tanh64

    fast = tanh64 if dtype == np.float64 else tanh32

    @numba.njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = fast(x[i])

    tiny = np.finfo(dtype).tiny
    x = np.concatenate([np.linspace(-25, 25, 400_001), np.geomspace(tiny, 1, 2000), -np.geomspace(tiny, 1, 2000),
                        [0.0, 19.0, 710.0, -800.0, np.inf, -np.inf]]).astype(dtype)
    out = np.empty_like(x)
    apply(x, out)
    ref = np.tanh(x.astype(np.float64)).astype(dtype)
    ulps = np.abs(out.astype(np.float64) - ref) / np.spacing(np.maximum(np.abs(ref), tiny))
    assert ulps.max() <= 4, (ulps.max(), x[ulps.argmax()])


def test_generated_kernel_is_cached_for_a_second_process(tmp_path):
    script = textwrap.dedent("""
        import sympy as sp, sdekit as sk
        from sdekit.kernels.cache import load_module
        from sdekit.solve import scheme_and_source
        y = sk.states("y", 2)
        prob = sk.SDEProblem(sk.SDE(y, drift=-y + sp.Matrix([sp.tanh(y[1]), 0]), diffusion=0.5), y0=[1, 0], tspan=(0, 1))
        sk.solve(sk.Ensemble(prob, n=8), "EM", dt=0.25)
        kernel = load_module(scheme_and_source(prob.model, sk.codegen.get_method("EM"), "numba")[1], "numba").kernel
        print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
    """)
    env = dict(os.environ, SDEKIT_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = (tuple(map(int, r.stdout.split()[-2:])) for r in runs)
    assert first == (0, 1)       # compiled
    assert second == (1, 0)      # loaded from the on-disk cache, no compile
    assert len(list(tmp_path.glob("*/numba.py"))) == 1


def test_inspect_prints_the_kernel():
    src = sk.inspect(neural(True).model, "SETD1", backend="numba")
    assert "for blk in range(blk0, blk1):" in src and "def kernel(blk0, blk1," in src and "nb_tanh(" in src
    assert "tree_step(" in src and "normals_block(" in src
    assert load_module(src, "numba").B == 128


def test_box_muller_elementary_functions_accuracy():
    """The kernel's branch-free log and sin/cos(2πu) on every uniform Philox can produce."""
    from sdekit.kernels.numba_runtime import log_pos, sincos_2pi

    @numba.njit(error_model="numpy")
    def apply(u, lg, sn, cs):
        for i in range(u.size):
            lg[i] = log_pos(u[i])
            sn[i], cs[i] = sincos_2pi(u[i])

    w = np.concatenate([np.random.default_rng(0).integers(0, 2**32, 200_000), [0, 1, 2**31, 2**32 - 1, 2**30]])
    u = (w.astype(float) + 0.5) * 2.0**-32
    lg, sn, cs = (np.empty_like(u) for _ in range(3))
    apply(u, lg, sn, cs)
    assert np.max(np.abs(lg - np.log(u)) / np.abs(np.log(u))) <= 2 * np.finfo(float).eps
    assert np.max(np.abs(sn - np.sin(2 * np.pi * u))) <= 1e-15
    assert np.max(np.abs(cs - np.cos(2 * np.pi * u))) <= 1e-15


def test_network_with_time_input_and_relu():
    y = sk.states("y", 2)
    net = sk.MLP("g", [3, 8, 2], activation="relu")
    rng = np.random.default_rng(4)
    w = [(rng.normal(size=(8, 3)), rng.normal(size=8)), (rng.normal(size=(2, 8)), rng.normal(size=2))]
    prob = sk.ODEProblem(sk.ODE(y, -y + net(y, sk.t)), y0=[0.3, -0.2], tspan=(0.5, 1.5), nets={"g": w})
    ens = sk.Ensemble(prob, y0=rng.normal(size=(5, 2)))
    a = sk.solve(ens, "RK4", dt=0.125)
    b = sk.solve(ens, "RK4", dt=0.125, backend="numpy")
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=RTOL * np.abs(b.y).max())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backend_interface_runs_any_chunk_alone(backend):
    """Kernel.run(inputs, Chunk) is the unit dask will ship: a chunk of trajectories (crossing block
    boundaries, with per-trajectory params) gives the whole run's values bitwise, and its own stats."""
    from sdekit.kernels.backend import Chunk
    from sdekit.solve import plan

    prob = neural(True)
    ks = np.linspace(0.5, 1.5, 300)
    ens = sk.Ensemble(sk.SDEProblem(prob.model, y0=prob.y0, tspan=prob.tspan, params={"k": ks}, nets=prob.nets),
                      n=300, seed=9)
    whole = sk.solve(ens, "EM", dt=2.0**-4, backend=backend)
    p = plan(ens, "EM", dt=2.0**-4, backend=backend)
    part = p.kernel.run(p.inputs, Chunk(101, 169))
    np.testing.assert_array_equal(np.transpose(part.saved, (2, 0, 1)), whole.y[101:270])
    assert part.stats.shape == (3, 169) and np.all(part.stats[1] == 16) and np.all(part.stats[0] == 16)


def test_kernels_read_l_and_operators_in_the_abi_layouts(monkeypatch):
    """``sdekit.abi`` alone fixes how ``Lm`` and the operator tables are laid out: printed kernels, runtime
    block algorithms (``matfun.lane_matrices`` through ``abi.view``) and the host follow it, so the
    transposed dense layouts give the same trajectories (non-symmetric L: a transposed read would not),
    on Numba and numpy (which takes the host's values as they are: ``abi.NUMPY_MODEL_ARGS``).  The fixed steps
    are dt = 0.3 on [0, 2], the last 0.2 (with the grid's rounding, five step classes), so the tables' step-class
    axis is read too."""
    from sdekit import abi

    def run():  # a new model each time: a model keeps its generated sources
        y = sk.states("y", 3)
        L = sp.Matrix([[-2, 1, sp.Rational(1, 2)], [sp.Rational(3, 10), -1, 0], [0, -sp.Rational(7, 10), -3]])
        model = sk.ODE(y, L * y + sp.Matrix([sp.sin(y[0]), 0, y[1] ** 2 / 10]))
        ens = sk.Ensemble(sk.ODEProblem(model, y0=[1.0, 0.5, -0.2], tspan=(0.0, 2.0)), n=5)
        # adaptive: each lane's φ from Lm (lane_matrices); fixed: the host's operator tables.  ETDRK2 reads Lm as
        # ETDRK3 does, and ETD1 the tables as ETDRK4 does, in a fraction of their compile time
        return ens, [sk.solve(ens, "ETDRK2", rtol=1e-7, atol=1e-9, backend=b).y for b in backends] + [
            sk.solve(ens, "ETD1", dt=0.3, backend=b).y for b in backends]

    backends = ("numpy",)            # the reference in the ABI's layouts (numpy and Numba agree: test_kernel_*)
    _, (adaptive, fixed) = run()
    monkeypatch.setitem(abi.LINEAR_LAYOUT, "dense", ("traj", "j", "i"))
    monkeypatch.setitem(abi.OPERATOR_LAYOUT, "dense", ("traj", "j", "hclass", "i"))
    backends = ("numba", "numpy")
    ens, after = run()
    assert "Lm.transpose((0, 2, 1))" in sk.inspect(ens, "ETDRK2", backend="numba", adaptive=True)
    for a, b in zip((adaptive, adaptive, fixed, fixed), after):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)


def test_runtime_functions_are_called_with_typed_integers_not_literals():
    """A literal integer argument makes Numba compile the callee once per value (``phi_block`` for each φ count:
    ~140 KB functions linked into every kernel that calls them; adaptive ETDRK3 compiled in 10.8 s instead of
    14.6 s without the extra one): the kernels pass ``np.int64(k)`` (``print_numba._runtime_argument``).  Every
    call of an imported runtime function in these kernels' sources has no int constant argument."""
    import ast
    y = sk.states("y", 2)
    drift = sp.Matrix([[-2, 1], [0, -3]]) * y + sp.Matrix([sp.sin(y[1]), y[0] ** 2])
    ode, sde = sk.ODE(y, drift), sk.SDE(y, drift, sp.Rational(1, 5), noise="diagonal")
    seen = set()
    for model, method, adaptive in ((ode, "ETDRK3", True), (ode, "Exprb43", True), (ode, "ROS34PW2", True),
                                    (sde, "SETD1", False), (sde, "SRA1", True)):
        tree = ast.parse(sk.inspect(model, method, adaptive=adaptive))
        runtime = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and (n.module or "").startswith("sdekit.kernels.") for a in n.names}
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)):
            if call.func.id in runtime:
                seen.add(call.func.id)
                assert not any(isinstance(a, ast.Constant) and type(a.value) is int for a in call.args), \
                    (method, ast.unparse(call))
    assert {"phi_block", "phi_block_work", "inverse_block", "normals_block", "lane_tree_buffers"} <= seen, seen


def test_kernels_print_L_where_they_read_it_only_through_f():
    """``solve.kernel_form``: a scheme whose only use of L is f = L y + c + N (explicit RK, EM, SRA) is printed
    from the same drift with L y in N and L zero, and its solve passes no L (k is a kernel argument); φ /
    resolvent tables, Jacobians, a numeric L, an entry that is no polynomial in the params (exp(k): formed once,
    not per stage) and an L of more than INLINE_LINEAR_TERMS non-zero entries keep L as it is.  (Their numbers:
    the golden records, taken with L read per trajectory, hold to 1e-13.)"""
    from sdekit.solve import INLINE_LINEAR_TERMS, kernel_form, plan
    y = sk.states("y", 3)
    k = sk.params("k")
    ode = sk.ODE(y, k * sp.Matrix([[-2, 1, 0], [-1, -3, 0], [0, 0, -4]]) * y + sp.Matrix([sp.sin(y[1]), 0, y[0] ** 2]))
    ens = sk.Ensemble(sk.ODEProblem(ode, y0=np.ones(3), tspan=(0.0, 1.0), params={"k": np.linspace(1, 2, 4)}), n=4)
    for name, inlined in (("RK4", True), ("Tsit5", True), ("ETDRK4", False), ("ROS34PW2", False), ("Exprb43", False)):
        form, _ = kernel_form(ode, get_method(name))
        assert (form.linear_structure == "zero") is inlined, name
        inputs = plan(ens, name, dt=0.1, backend="numpy").inputs
        assert (inputs.Lval is None and inputs.structure == "zero") is inlined, name
        assert np.array_equal(inputs.params["k"], np.linspace(1, 2, 4))
    transcendental = sk.ODE(y, sp.exp(k) * sp.diag(-1, -2, -3) * y + y.applyfunc(sp.sin))
    assert kernel_form(transcendental, get_method("RK4"))[0].linear_structure == "diagonal"
    sde = sk.SDE(y, drift=ode.form.drift, diffusion=sp.Rational(1, 5))
    for name, inlined in (("EM", True), ("SRA1", True), ("SETD1", False)):
        assert (kernel_form(sde, get_method(name))[0].linear_structure == "zero") is inlined, name
    d = 9      # 81 non-zero entries > INLINE_LINEAR_TERMS
    z = sk.states("z", d)
    full = sk.ODE(z, k * sp.Matrix(d, d, lambda i, j: -3 if i == j else sp.Rational(1, 10)) * z + z.applyfunc(sp.sin))
    assert d * d > INLINE_LINEAR_TERMS and kernel_form(full, get_method("RK4"))[0].linear_structure == "dense"
    numeric = sk.ODE(y, linear=np.array([[-1.0, 0.5, 0], [0, -2, 0], [0, 0, -3]]), nonlinear=y.applyfunc(sp.sin))
    assert kernel_form(numeric, get_method("RK4"))[0].linear_structure == "dense"


def test_generated_kernels_hold_nothing_they_do_not_use():
    """Issue 13's dead-code rules, on the printed sources (no compile): an autonomous model's adaptive
    kernels keep no stage times; fixed steps allocate no error register; a single weight-1 Jacobian
    operator is a view of φ's block; a param that enters only L is no kernel argument where L is read from
    tables, and where L enters only f its entries are printed (no Lm); an additive
    autonomous G is evaluated once by numpy; network inputs are not loaded twice."""
    y = sk.states("y", 3)
    k = sk.params("k")
    net = sk.MLP("f", SIZES)
    ode = sk.ODE(y, k * sp.diag(-1, -5, -20) * y + net(y))
    for method in ("Tsit5", "ROS34PW2", "ETDRK3"):
        for backend in ("numba", "numpy", "cuda"):
            if backend == "cuda" and method != "Tsit5":
                continue
            src = sk.inspect(ode, method, backend=backend, adaptive=True)
            assert not any(name in src for name in ("tc[", "tc =", "t_l[", "t_l =")), (method, backend)
    exprb = sk.inspect(ode, "Exprb43", backend="numba")
    assert "err = np.empty" not in exprb and "jop_Q1 = phj0[1]" in exprb and "scale_block(jop_Q1" not in exprb
    sde = sk.SDE(y, drift=k * sp.diag(-1, -5, -20) * y + net(y), diffusion=sp.Rational(1, 5))
    setd = sk.inspect(sde, "SETD1")          # L in operator tables: k is no argument
    assert "P_k" not in setd and "op_" in setd
    em = sk.inspect(sde, "EM")               # L only in f (solve.kernel_form): L's entries printed, no Lm
    assert "P_k" in em and "Lm" not in em and "-20*p_k*v2" in em.replace(" ", "")
    etd = sk.inspect(ode, "ETDRK4")
    rhs = etd[etd.index("def rhs_block"):etd.index("def kernel")]
    assert "v0 = st[0, b]" not in rhs.split("f_out[j, b] = f_b")[-1]     # N = net(y): only the network reads y
    for method in ("EM", "SRA1"):
        src = sk.inspect(sk.SDE(y, drift=-y, diffusion=sp.Rational(1, 5)), method, backend="numpy")
        assert src.count("diffusion(") == 2 and "G = diffusion(y, None, p)" in src   # its def and one call


def test_printed_functions_compile_through_the_pipeline_for_generated_code():
    """Every printed Numba function (kernel and lane functions) is decorated with the pipeline for generated code
    (kernels.numba_runtime.GeneratedCompiler, no rewrites); the pipeline runs Numba's passes but the closure
    inliner, and compiles what it is given to the same values."""
    from sdekit.kernels.numba_runtime import GeneratedCompiler
    y = sk.states("y", 2)
    ode = sk.ODE(y, sp.Matrix([[-1, 0], [1, -2]]) * y + sp.Matrix([sp.sin(y[1]), sk.t]))
    for method, adaptive in (("Tsit5", True), ("Exprb43", False)):
        src = sk.inspect(ode, method, backend="numba", adaptive=adaptive)
        decorators = [ln for ln in src.splitlines() if ln.lstrip().startswith("@numba.njit(")]
        assert len(decorators) >= 2, src                 # the kernel and its lane functions
        assert all("no_rewrites=True, pipeline_class=GeneratedCompiler" in ln for ln in decorators), decorators

    def lane_sum(x, out):
        for b in range(x.shape[1]):
            acc = 0.0
            for i in range(x.shape[0]):
                acc = acc + math.sin(x[i, b]) * x[i, b]
            out[b] = acc

    compiled = numba.njit(no_rewrites=True, pipeline_class=GeneratedCompiler)(lane_sum)
    x, out = np.random.default_rng(0).normal(size=(3, 7)), np.empty(7)
    compiled(x, out)
    np.testing.assert_allclose(out, (np.sin(x) * x).sum(axis=0), rtol=1e-14)
    (overload,) = compiled.overloads.values()
    passes = list(overload.metadata["pipeline_times"]["generated"])
    assert any("nopython_type_inference" in p for p in passes) and not any("inline_closure" in p for p in passes)
