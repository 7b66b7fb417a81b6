"""The CUDA backend without a GPU (issue 15; platform-notes.md "CUDA without a GPU").

The CUDA C kernel is printed from the same loop IR as the Numba one (``codegen/print_cuda.py``).
Here its source is (1) compiled to PTX by ``nvcc`` where nvcc is installed and (2) compiled as
host C++ through the prelude's shim and run on the CPU (``backend="cuda-host"``): its trajectories,
retcodes and kernel-counted stats agree with the Numba backend's.  Runs on a GPU are in
``benchmarks/cuda_device.py``.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import sdekit as sk
from sdekit.codegen.builders import build_scheme
from sdekit.codegen.emit_cuda import cuda_source
from sdekit.codegen.methods import CATALOGUE
from sdekit.kernels.cache import source_hash
from sdekit.solve import CUDA_DEVICE_FUNCTIONS

sys.path.insert(0, str(Path(__file__).parent))      # the sibling test modules' models and tests/fake_cupy.py

#: the CUDA emitter covers every catalogue method, fixed and adaptive: each thread's φ_k(c hL) from
#: kernels.matfun.phi_scalar (elementwise L) or kernels.matfun's block algorithms (dense L, the exponential
#: Rosenbrock methods' φ_k(c hJ̃)), SDEs' Philox and (W, H) tree from kernels/philox.py and
#: kernels/brownian.py — all printed from their one Python definition (print_c_function's strided Views)
FIXED = [m for m in CATALOGUE if not m.stochastic]
ADAPTIVE = [m for m in FIXED if m.adaptive]
SDE = [m for m in CATALOGUE if m.stochastic]
ADAPTIVE_RK = [m for m in ADAPTIVE if m.family.operand == ""]
#: compared with the compiled Numba kernel too (float64 and float32); all are compared with numpy
WITH_NUMBA = ["RK4", "Tsit5", "ETDRK4", "ROS34PW2", "ETDAdams3"]


def model(structure):
    """y' = k L y + N(y, t), N with sin, exp, tanh, a power and a Piecewise; k per trajectory."""
    y = sk.states("y", 3)
    k = sk.params("k")
    L = {"zero": sp.zeros(3, 3), "diagonal": sp.diag(-1, -5, -20),
         "dense": sp.Matrix([[-2, 1, 0], [-1, -3, sp.Rational(1, 2)], [0, -sp.Rational(1, 2), -4]])}[structure]
    N = sp.Matrix([sp.sin(y[1]) + sp.cos(sk.t) / 2, sp.tanh(y[0]) * y[2] - y[1] ** 3 / 8,
                   sp.Piecewise((sp.exp(-y[0] ** 2), y[0] > 0), (1 - y[0] ** 2 / 2, True)) - y[2] / 4])
    return sk.ODE(y, k * L * y + N)


def ensemble(structure, n=37):
    rng = np.random.default_rng(3)
    prob = sk.ODEProblem(model(structure), y0=np.array([0.5, -0.2, 1.0]), tspan=(0.0, 1.0),
                         params={"k": rng.uniform(0.5, 1.5, n)})
    return sk.Ensemble(prob, y0=rng.normal(size=(n, 3)))


def sde_model(noise, method):
    """dy = (k L y + N(y, t)) dt + G dW, L dense; G multiplicative where the method allows it (EM,
    Milstein), additive (SRA, SETD1) otherwise; k (per trajectory) in G too."""
    y = sk.states("y", 2)
    k = sk.params("k")
    drift = k * sp.Matrix([[-1, sp.Rational(1, 2)], [0, -2]]) * y + sp.Matrix([sp.sin(y[1]) + sp.cos(sk.t) / 2, -y[0] ** 3 / 8])
    additive = method.noise in ("sra", "convolution")
    if noise == "general":
        G = sp.Matrix([[sp.Rational(3, 10), k / 10], [sp.Rational(1, 20), sp.Rational(1, 5)]])
        G = G if additive else G + sp.diag(sp.cos(y[0]) / 10, 0)
    else:
        G = sp.Matrix([sp.Rational(3, 10), k / 5]) if additive else sp.Matrix([sp.Rational(3, 10) + sp.cos(y[0]) / 10, y[1] / 5])
    return sk.SDE(y, drift, G, noise=noise)


def sde_ensemble(noise, method, n=9):
    rng = np.random.default_rng(1)
    prob = sk.SDEProblem(sde_model(noise, method), y0=np.array([0.5, -0.2]), tspan=(0.0, 1.0),
                         params={"k": rng.uniform(0.5, 1.5, n)})
    return sk.Ensemble(prob, y0=rng.normal(size=(n, 2)))


def test_the_emitter_covers_what_it_says():
    assert {m.name for m in FIXED + SDE} == {m.name for m in CATALOGUE}
    assert len(_NVCC) == 11 and set(_NVCC_UNOPTIMISED) < set(_NVCC_IDS)
    assert {"EM", "Milstein", "SETD1", "SRA1", "SRA3", "SOSRA"} == {m.name for m in SDE}
    assert {"DP5", "Tsit5", "Heun"} == {m.name for m in ADAPTIVE_RK}
    assert {"ETDRK3", "ETDAdams3", "ROS34PW2", "Rosenbrock23", "Exprb43"} <= {m.name for m in ADAPTIVE}


def _agree(a, b, dtype, tol=None, steps=0.0):
    """Same trajectories (1e-12 of their scale in float64), retcodes and stats (within ``steps``,
    relative: float32 adaptive runs round differently — C++ takes float sin/exp of float arguments,
    Numba float64 — so a step near the accept boundary may go the other way)."""
    scale = np.max(np.abs(a.y))
    tol = tol or (1e-12 if dtype == "float64" else 2e-5)
    assert np.max(np.abs(a.y - b.y)) <= tol * scale, (np.max(np.abs(a.y - b.y)), scale)
    assert list(a.retcodes) == list(b.retcodes)
    for k, v in a.stats.items():
        assert abs(b.stats[k] - v) <= steps * v, (k, a.stats, b.stats)


_SDE_CASES = [(m, noise) for m in SDE for noise in ("diagonal", "scalar", "general")
              if not (noise == "general" and m.name in ("Milstein", "SETD1"))]   # what they support


@pytest.mark.parametrize("method, noise", _SDE_CASES, ids=[f"{m.name}-{n}" for m, n in _SDE_CASES])
def test_host_compiled_cuda_sde_agrees_with_numpy(method, noise):
    """SDEs at fixed steps, every method and noise: the printed Philox, normal transform and (W, H) tree
    give the runtime's Brownian path (numpy runs the same Numba functions), so the same trajectories."""
    ens = sde_ensemble(noise, method)
    kw = dict(dt=0.01, saveat="steps")
    _agree(sk.solve(ens, method.name, backend="numpy", **kw), sk.solve(ens, method.name, backend="cuda-host", **kw),
           "float64")


_SDE_WITH_NUMBA = [("EM", "general", "float64"), ("EM", "general", "float32"), ("Milstein", "diagonal", "float64"),
                   ("SETD1", "scalar", "float64"), ("SETD1", "scalar", "float32"), ("SRA1", "diagonal", "float64"),
                   ("SRA1", "diagonal", "float32")]


@pytest.mark.parametrize("name, noise, dtype", _SDE_WITH_NUMBA)
def test_host_compiled_cuda_sde_agrees_with_numba(name, noise, dtype):
    """The same against the compiled Numba kernel (float64 1e-12; float32 within its rounding).  float64 on the
    neural SDE of tests/test_numba.py with the L that file runs each method on, so that those Numba kernels are
    compiled once for both files (its drift has the network; its noise is additive); float32, and Milstein (whose
    derivative term is zero under additive noise), on this file's model: G(y) with the parameter k in it."""
    method = next(m for m in SDE if m.name == name)
    if name == "Milstein" or dtype == "float32":
        ens = sde_ensemble(noise, method)
    else:
        ens = _neural_ensemble(_numba_structure(name, noise), stochastic=True, noise=noise, n=9)
    kw = dict(dt=0.01, saveat="steps", dtype=dtype)
    _agree(sk.solve(ens, name, backend="numba", **kw), sk.solve(ens, name, backend="cuda-host", **kw), dtype)


@pytest.mark.parametrize("method", [m for m in SDE if m.adaptive], ids=lambda m: m.name)
def test_host_compiled_cuda_adaptive_sde_agrees_with_the_kernels(method):
    """Adaptive SDEs: each thread's time-addressed tree (lane_tree_*, printed as C; the Numba functions'
    increments to a few ulp in test_the_printed_lane_tree_is_the_numba_lane_tree).  Not step for step over a whole solve: a step end
    one ulp apart can land on the next tree position and move W by ~1e-8, and a later accept/reject
    decision near EEst = 1 may flip (test_adaptive.test_kernel_sde_agrees_with_the_reference, where numpy
    and Numba differ the same way) — so the first steps agree to 1e-7, the ensemble to the tolerance and
    its step counts within 10 %."""
    ens = sde_ensemble("diagonal", method, n=20)
    kw = dict(rtol=1e-3, atol=1e-3, saveat=np.linspace(0.0, 1.0, 5))
    reference = "numba" if method.name == "SRA1" else "numpy"    # numpy runs the same IR and tree functions
    a, b = (sk.solve(ens, method.name, backend=bk, **kw) for bk in (reference, "cuda-host"))
    assert abs(a.stats["naccept"] - b.stats["naccept"]) <= 0.1 * a.stats["naccept"], (a.stats, b.stats)
    assert np.abs(a.y - b.y).max() < 1e-2 and list(a.retcodes) == list(b.retcodes)
    one = sk.SDEProblem(sde_model("diagonal", method), y0=np.array([0.5, -0.2]), tspan=(0.0, 1.0), params={"k": 1.2})
    a, b = (sk.solve(one, method.name, backend=bk, rtol=1e-3, atol=1e-3, seed=2, saveat="steps")
            for bk in (reference, "cuda-host"))
    np.testing.assert_allclose(b.t[:5], a.t[:5], rtol=1e-12)
    np.testing.assert_allclose(b.y[:5], a.y[:5], rtol=0, atol=1e-7)


def test_host_compiled_cuda_adaptive_sra1_agrees_with_numba_in_float32():
    """Adaptive SRA1 in float32 against the float32 Numba kernel, as in float64 above: the ensemble to the tolerance,
    the same retcodes, step counts within 10 % (a step near EEst = 1 may be decided the other way)."""
    method = next(m for m in SDE if m.name == "SRA1")
    ens = sde_ensemble("diagonal", method, n=20)
    kw = dict(rtol=1e-3, atol=1e-3, saveat=np.linspace(0.0, 1.0, 5), dtype="float32")
    a, b = (sk.solve(ens, "SRA1", backend=bk, **kw) for bk in ("numba", "cuda-host"))
    assert a.y.dtype == b.y.dtype == np.float32
    assert abs(a.stats["naccept"] - b.stats["naccept"]) <= 0.1 * a.stats["naccept"], (a.stats, b.stats)
    assert np.abs(a.y - b.y).max() < 1e-2 and list(a.retcodes) == list(b.retcodes)


@pytest.mark.parametrize("structure", ["diagonal", "dense"])
@pytest.mark.parametrize("method", FIXED, ids=[m.name for m in FIXED])
def test_host_compiled_cuda_agrees_with_numpy_fixed_steps(method, structure):
    """Every covered method, diagonal and dense L (φ / resolvent tables per step class), float64."""
    ens = ensemble(structure)
    kw = dict(dt=0.01, saveat="steps")
    _agree(sk.solve(ens, method.name, backend="numpy", **kw), sk.solve(ens, method.name, backend="cuda-host", **kw),
           "float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", WITH_NUMBA)
def test_host_compiled_cuda_agrees_with_numba_fixed_steps(method, dtype):
    """float64 on the neural ODE of tests/test_numba.py, with the L that file runs the method on, so that those Numba
    kernels are compiled once for both files (this file's model meets numpy above, every method on both L); float32
    on this file's model with a dense L (sin, exp, tanh, a power and a Piecewise in float32)."""
    ens = _neural_ensemble(_numba_structure(method), n=37) if dtype == "float64" else ensemble("dense")
    kw = dict(dt=0.01, saveat="steps", dtype=dtype)
    _agree(sk.solve(ens, method, backend="numba", **kw), sk.solve(ens, method, backend="cuda-host", **kw), dtype)


_ADAPTIVE_CASES = [(m, saveat, dtype) for m in ADAPTIVE_RK for saveat in (None, "dense") for dtype in ("float64", "float32")
                   if dtype == "float64" or m.name == "Tsit5"]


@pytest.mark.parametrize("method, saveat, dtype", _ADAPTIVE_CASES,
                         ids=[f"{m.name}-{s}-{d}" for m, s, d in _ADAPTIVE_CASES])
def test_host_compiled_cuda_agrees_with_the_reference_adaptive(method, saveat, dtype):
    """The adaptive driver — initial step, controller, stops, continuous extension at saveat — from
    the same IR: the same accepted and rejected steps per trajectory.  The float64 reference is numpy, which
    runs the same IR (test_adaptive ties the Numba kernels to it; the MLP test below compares adaptive Tsit5
    with Numba in float64); float32 is Numba's, for Tsit5 (DP5 and Heun print the same driver around their
    tableaus, which float64 checks; each float32 Numba kernel is ~6 s of compile)."""
    ens = ensemble("diagonal")
    f64 = dtype == "float64"
    rtol = (1e-5 if method.embedded_order == 1 else 1e-7) if f64 else 1e-4     # Heun at 1e-7: 17000 steps
    kw = dict(rtol=rtol, atol=rtol / 100, dtype=dtype, tstops=[0.3])
    if saveat == "dense":
        kw["saveat"] = np.linspace(0, 1, 11)
    reference = "numpy" if f64 else "numba"
    _agree(sk.solve(ens, method.name, backend=reference, **kw), sk.solve(ens, method.name, backend="cuda-host", **kw),
           dtype, None if f64 else 1e-3, 0.0 if f64 else 0.02)


_PER_THREAD = [(m, s) for m in ADAPTIVE if m.family.operand for s in ("diagonal", "dense")
               if s == "dense" or m.name in ("ETDRK3", "ETDAdams3", "ROS34PW2", "Exprb32")]   # diagonal: one a family


@pytest.mark.parametrize("method, structure", _PER_THREAD, ids=[f"{m.name}-{s}" for m, s in _PER_THREAD])
def test_host_compiled_cuda_agrees_with_the_reference_per_thread_operators(method, structure):
    """Adaptive exponential, W- and exponential Rosenbrock methods: each thread's φ_k(c hL), resolvents
    and φ_k(c hJ̃) for its own step, from the IR's lane operators (phi: kernels.matfun.phi_scalar printed
    as C; dense: lane_matrices, phi_block, inverse_block printed as C) — the same steps as numpy's run of
    the same IR and runtime functions.  Against the compiled Numba kernel: Exprb43 below; the others agree with
    Numba through numpy (test_adaptive ties every adaptive method's Numba kernel to the numpy driver)."""
    ens = ensemble(structure, n=9 if structure == "dense" else 37)
    kw = dict(rtol=1e-7, atol=1e-9, saveat=np.linspace(0, 1, 5))
    _agree(sk.solve(ens, method.name, backend="numpy", **kw), sk.solve(ens, method.name, backend="cuda-host", **kw),
           "float64")


def test_host_compiled_cuda_exponential_rosenbrock_agrees_with_numba():
    """Adaptive Exprb43 on a dense L (φ blocks of each thread's hJ̃, J ≠ L) against the compiled Numba kernel: the
    same steps and values, on the known-solution problem whose Numba kernel tests/test_adaptive.py compiles for its
    tolerance test (a kernel of ~10 s compile, compiled once for both files)."""
    from test_adaptive import KERNEL_CASES, cross_check_ensemble
    ens, ts, _ = cross_check_ensemble(dict(KERNEL_CASES)["Exprb43"])
    kw = dict(rtol=1e-7, atol=1e-9, saveat=ts)
    a, b = (sk.solve(ens, "Exprb43", backend=bk, **kw) for bk in ("numba", "cuda-host"))
    assert not dict(KERNEL_CASES)["Exprb43"] and a.stats["naccept"] > 100, a.stats      # a dense L, many steps
    _agree(a, b, "float64")


def test_a_diverging_trajectory_gets_its_retcode_on_cuda():
    """y' = y²: y0 = 1 blows up at t = 1 (Unstable at fixed steps, DtLessThanMin adaptively), y0 = −1 is fine."""
    y = sk.states("y", 1)
    prob = sk.ODEProblem(sk.ODE(y, sp.Matrix([y[0] ** 2])), y0=np.array([1.0]), tspan=(0.0, 2.0))
    ens = sk.Ensemble(prob, y0=np.array([[-1.0], [1.0], [-1.0]]))
    for kw in (dict(dt=0.01), dict(rtol=1e-8, atol=1e-8, dtmin=1e-9)):
        a, b = (sk.solve(ens, "Tsit5", backend=bk, **kw) for bk in ("numba", "cuda-host"))
        assert list(b.retcodes) == list(a.retcodes) and b.retcodes[0] == "Success" != b.retcodes[1]
        assert np.allclose(b.y[[0, 2], -1, 0], -1 / 3, rtol=1e-6)


#: float32 sources compiled too: one per kind of adaptive kernel (the types differ, the code does not)
_FLOAT32 = ("Tsit5", "ETDRK3", "ROS34PW2", "Exprb43", "SRA1")


def _sources():
    for m in FIXED + SDE:
        yield m, False, "float64"
        if m.name in ("RK4", "ETDRK4", "Exprb43", "EM", "SETD1"):      # float32 fixed-step kernels too
            yield m, False, "float32"
    for m in ADAPTIVE + [m for m in SDE if m.adaptive]:
        yield m, True, "float64"
        if m.name in _FLOAT32:
            yield m, True, "float32"


def _emitted(method, adaptive, dtype):
    """The source as solve prints it (a dense L: per-thread block algorithms when adaptive; SDEs: general noise)."""
    if method.stochastic:
        form = sde_model("diagonal" if method.name in ("Milstein", "SETD1") else "general", method).form
    else:
        form = model("dense").form
    return cuda_source(form, build_scheme(form, method), dtype, adaptive, CUDA_DEVICE_FUNCTIONS)


_IDS = [f"{m.name}-{'adaptive' if a else 'fixed'}-{d}" for m, a, d in _sources()]
#: one source per shape of kernel, compiled with the optimiser by NVRTC and by nvcc (about a second a kernel)
_NVCC_IDS = ("RK4-fixed-float64", "ETDRK4-fixed-float64", "ETDAdams3-fixed-float64", "ROS34PW2-fixed-float64",
             "Exprb43-fixed-float64", "EM-fixed-float64", "SETD1-fixed-float64", "Tsit5-adaptive-float32",
             "ETDRK3-adaptive-float64", "Exprb43-adaptive-float32", "SRA1-adaptive-float64")


@pytest.mark.parametrize("method, adaptive, dtype", list(_sources()), ids=_IDS)
def test_every_cuda_source_compiles_with_nvrtc(method, adaptive, dtype):
    """NVRTC (the compiler CuPy uses on a GPU) from the test extras' nvidia-cuda-nvrtc-cu12: no GPU needed.  Every
    source without NVVM's optimiser (-G: the same front end and code generation, a tenth of the compile time); one
    source per shape of kernel with it (_NVCC, below: NVRTC and nvcc -ptx)."""
    pytest.importorskip("nvidia.cuda_nvrtc", reason="nvidia-cuda-nvrtc-cu12 (the test extras) is not installed")
    from sdekit.kernels.cuda_backend import nvrtc_ptx
    optimize = f"{method.name}-{'adaptive' if adaptive else 'fixed'}-{dtype}" in _NVCC_IDS
    assert ".visible .entry kernel(" in nvrtc_ptx(_emitted(method, adaptive, dtype), optimize=optimize)


_NVCC = [k for k, i in zip(_sources(), _IDS) if i in _NVCC_IDS]
#: compiled by nvcc without its optimiser (-G): per-thread matrix functions, optimised by NVRTC above
_NVCC_UNOPTIMISED = ("ETDRK3-adaptive-float64", "Exprb43-fixed-float64", "Exprb43-adaptive-float32")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed on this machine")
@pytest.mark.parametrize("method, adaptive, dtype", _NVCC, ids=[f"{m.name}-{'adaptive' if a else 'fixed'}-{d}"
                                                                 for m, a, d in _NVCC])
def test_cuda_sources_compile_to_ptx_with_nvcc(method, adaptive, dtype, tmp_path):
    """nvcc -ptx, with its optimiser but for the three sources with per-thread matrix functions (φ blocks of hL or
    hJ̃: 6–7 s each with it, 0.5 s as -G).  NVRTC optimises those above; the two need not be the same CUDA release
    (nvcc may be CUDA 13 where the test extras' NVRTC is 12)."""
    src = tmp_path / "k.cu"
    src.write_text(_emitted(method, adaptive, dtype))
    unoptimised = f"{method.name}-{'adaptive' if adaptive else 'fixed'}-{dtype}" in _NVCC_UNOPTIMISED
    done = subprocess.run(["nvcc", "-ptx", *(["-G"] if unoptimised else []), "-arch=sm_80", "-std=c++17", "-o",
                           str(tmp_path / "k.ptx"), str(src)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert ".visible .entry kernel(" in (tmp_path / "k.ptx").read_text()


def test_same_model_same_source_same_cache_key():
    m = next(m for m in ADAPTIVE if m.name == "Tsit5")
    a, b = model("diagonal").form, model("diagonal").form
    src = [cuda_source(f, build_scheme(f, m), "float64", True, CUDA_DEVICE_FUNCTIONS) for f in (a, b)]
    assert src[0] == src[1] and source_hash(src[0]) == source_hash(src[1])
    assert source_hash(cuda_source(a, build_scheme(a, m), "float32", True, CUDA_DEVICE_FUNCTIONS)) != \
        source_hash(src[0])


def test_without_cupy_backend_cuda_says_what_is_missing():
    import importlib.util
    if importlib.util.find_spec("cupy") is None:
        with pytest.raises(RuntimeError, match="needs CuPy .* CuPy is not installed"):
            sk.solve(ensemble("diagonal"), "RK4", dt=0.1, backend="cuda")
    else:   # CuPy without a device (this CI) says so; with one, nothing to check here
        from sdekit.kernels.cuda_backend import require_gpu
        try:
            require_gpu()
        except RuntimeError as e:
            assert "finds no CUDA device" in str(e)


def test_inspect_prints_the_cuda_source():
    src = sk.inspect(model("diagonal"), "Tsit5", backend="cuda", adaptive=True)
    assert 'extern "C" __global__ void kernel(' in src and "__device__ void kernel_thread(long long tid" in src
    assert "nan_min" in src and "kernel_host" in src


def _neural_ensemble(structure, stochastic=False, noise="general", n=20):
    """The neural ODE (or SDE, general noise by default) of tests/test_numba.py: y' = k L y + MLP 3-16-16-3 (tanh) + c(t)."""
    from test_numba import neural
    return sk.Ensemble(neural(stochastic, structure, noise), y0=np.random.default_rng(0).normal(size=(n, 3)))


def _numba_structure(name, noise=None):
    """The L (diagonal or dense) on which tests/test_numba.py runs ``name``'s fixed-step Numba kernel (with
    ``noise``, for an SDE), so that a comparison here on its model reuses that kernel from the disk cache."""
    from test_numba import CASES, CATALOGUE_REST
    for case_name, _, structure, case_noise, _ in CASES:
        if case_name == name and case_noise == noise:
            return structure
    assert noise in (None, "diagonal"), (name, noise)        # the rest run with diagonal noise
    return "dense" if CATALOGUE_REST.index(name) % 2 else "diagonal"


@pytest.mark.parametrize("method, kw, dtype", [
    ("RK4", dict(dt=0.05, saveat="steps"), "float64"), ("RK4", dict(dt=0.05, saveat="steps"), "float32"),
    ("ETDRK4", dict(dt=0.05), "float64"), ("Tsit5", dict(rtol=1e-8, atol=1e-8), "float64"),
    ("Exprb43", dict(dt=0.05), "float64"), ("Exprb32", dict(rtol=1e-7, atol=1e-8), "float64"),
    ("EM", dict(dt=0.01), "float32"), ("SRA1", dict(dt=0.01), "float64"), ("Exprb43", dict(dt=0.05), "float32")])
def test_the_mlp_in_the_cuda_kernel_agrees_with_the_kernels(method, kw, dtype):
    """The network is a forward pass in the thread (weights in global memory), on a dense L; the
    exponential Rosenbrock methods' J̃ adds its forward-mode tangent pass; the neural SDE has general noise."""
    ens = _neural_ensemble("dense", stochastic=method in ("EM", "SRA1"))
    # the same IR on numpy; Numba where the dtype is float32, and for one kernel of each kind (fixed, adaptive, Exprb)
    reference = "numpy" if method in ("Exprb32", "RK4", "SRA1") and dtype == "float64" else "numba"
    _agree(sk.solve(ens, method, backend=reference, dtype=dtype, **kw),
           sk.solve(ens, method, backend="cuda-host", dtype=dtype, **kw), dtype)


def test_the_neural_kernel_compiles_with_nvrtc():
    pytest.importorskip("nvidia.cuda_nvrtc", reason="nvidia-cuda-nvrtc-cu12 (the test extras) is not installed")
    from sdekit.kernels.cuda_backend import nvrtc_ptx
    src = sk.inspect(_neural_ensemble("diagonal"), "Tsit5", backend="cuda", adaptive=True)
    assert "f_out" in src and ".visible .entry kernel(" in nvrtc_ptx(src)
    # the weights (3-16-16-3: 387 numbers) are read into shared memory once per block
    assert "__shared__ __align__(16) real s_f_W1[256];" in src and "__syncthreads();" in src


def test_the_networks_layers_stay_in_registers_and_load_their_weights_four_at_a_time(monkeypatch):
    """Small layers (``emit_cuda.unrolled_layer``) are unrolled on the GPU (SDEKIT_UNROLL), in a device function of
    their own (``inlining``).  In the PTX of the neural SDE benchmark's EM kernel (MLP 4-32-32-4, float32) that
    function has no local array (``__local_depot``: a loop index into the activations puts them in local memory) and
    loads every weight and bias once, 16 bytes at a time: (1280 + 68) / 4 loads.  Tsit5 calls that one copy for
    each of its six evaluations a step.  Printed as loops (UNROLL_LAYER = 0: the form before) the network is
    inlined and reads its weights inside loops, fewer loads in the text."""
    pytest.importorskip("nvidia.cuda_nvrtc", reason="nvidia-cuda-nvrtc-cu12 (the test extras) is not installed")
    from sdekit.codegen import emit_cuda
    from sdekit.kernels.cuda_backend import nvrtc_ptx

    def ptx(method="EM"):    # a new model each time: a model keeps its printed sources
        y = sk.states("y", 4)
        net = sk.MLP("f", [4, 32, 32, 4], activation="tanh")
        drift = sp.diag(-1, -2, -3, -4) * y + net(y)
        model = sk.SDE(y, drift, sp.Rational(1, 10), noise="diagonal") if method == "EM" else sk.ODE(y, drift)
        return nvrtc_ptx(sk.inspect(model, method, backend="cuda", dtype="float32"))

    def network(ptx_text):     # the body of the model function that runs the network
        return re.search(r"^\.func [^\n]*rhs_full.*?^}", ptx_text, re.M | re.S).group(0)

    weights_and_biases = 4 * 32 + 32 * 32 + 32 * 4 + 32 + 32 + 4
    unrolled = network(ptx())
    assert "__local_depot" not in unrolled and "ld.shared.f32" not in unrolled
    assert unrolled.count("ld.shared.v4.f32") == weights_and_biases // 4
    tsit5 = ptx("Tsit5")
    assert len(re.findall(r"^\.func [^\n]*rhs_full", tsit5, re.M)) == 1
    assert len(re.findall(r"call\.uni\s+(?:\(retval0\),\s+)?_Z\d+rhs_full", tsit5)) >= 6     # FSAL: six f a step
    assert 1280 <= tsit5.count("fma.rn.f32") < 2 * 1280
    monkeypatch.setattr(emit_cuda, "UNROLL_LAYER", 0)
    loops = ptx()
    assert not re.search(r"^\.func [^\n]*rhs_full", loops, re.M)
    assert len(re.findall(r"ld\.shared", loops)) < weights_and_biases // 4


def _host_functions(*fns):
    """The printed runtime functions, each callable through ctypes as ``call_<name>`` (arrays as pointer
    and shape)."""
    import ctypes
    from sdekit.codegen.emit_cuda import _PRELUDE
    from sdekit.codegen.print_c_function import c_functions, c_host_entry
    from sdekit.kernels.cuda_backend import host_library
    constants, lines = c_functions({f.py_func.__name__: f for f in fns})
    entries = [ln for f in fns for ln in c_host_entry(f, f"call_{f.py_func.__name__}")]
    lib = host_library("\n".join([_PRELUDE, *constants, *lines, *entries]))

    def wrap(f):
        call = getattr(lib, f"call_{f.py_func.__name__}")

        def run(*args):
            keep, cargs = [], []
            for a in args:
                if isinstance(a, np.ndarray):
                    shape = np.array(a.shape, dtype=np.int64)
                    keep += [a, shape]
                    cargs += [ctypes.c_void_p(a.ctypes.data), ctypes.c_void_p(shape.ctypes.data)]
                elif isinstance(a, (np.uint64, np.uint32)):
                    cargs.append(ctypes.c_ulonglong(int(a)))
                elif isinstance(a, (bool, np.bool_)):
                    cargs.append(ctypes.c_bool(bool(a)))
                elif isinstance(a, (int, np.integer)):
                    cargs.append(ctypes.c_longlong(int(a)))
                else:
                    cargs.append(ctypes.c_double(float(a)))
            call(*cargs)
        return run
    return [wrap(f) for f in fns]


def test_the_printed_lane_tree_is_the_numba_lane_tree():
    """The adaptive kernel's per-lane frontiers (kernels/brownian.py lane_tree_*), printed as C through
    print_c_function's Views, give the Numba functions' (ΔW, H) on random intervals with rejections (as
    tests/test_brownian.test_lane_frontiers_are_the_host_path drives them): the same nodes and splits,
    values to a few ulp (Numba contracts a·b + c into FMAs, -O2 host C++ does not)."""
    from sdekit.kernels import brownian as br
    from sdekit.kernels.philox import seed_key
    start, incr, accept = _host_functions(br.lane_tree_start, br.lane_tree_increments, br.lane_tree_accept)
    m, n = 2, 4
    k0, k1 = (np.uint64(k) for k in seed_key(8))
    src = np.arange(n, dtype=np.int64)
    ours, theirs = br.lane_tree_buffers(n, m), br.lane_tree_buffers(n, m)
    start(k0, k1, 0, src, 1.0, *ours[:3], ours[6])
    br.lane_tree_start(k0, k1, np.int64(0), src, 1.0, *theirs[:3], theirs[6])
    rng = np.random.default_rng(0)
    t = np.zeros(n)
    out = [np.empty((m, n)) for _ in range(4)]
    for _ in range(40):
        te = np.minimum(t + rng.uniform(1e-4, 0.08, n), 1.0)
        act = t < 1.0
        incr(k0, k1, 0, src, 1.0, 0.0, t, te, act, *ours, out[0], out[1])
        br.lane_tree_increments(k0, k1, np.int64(0), src, 1.0, 0.0, t, te, act, *theirs, out[2], out[3])
        np.testing.assert_allclose(out[0], out[2], rtol=0, atol=1e-15)
        np.testing.assert_allclose(out[1], out[3], rtol=0, atol=1e-15)
        for b in np.flatnonzero(act & (rng.uniform(size=n) < 0.7)):     # accepted; else retried from t
            accept(b, *ours[:6])
            br.lane_tree_accept(b, *theirs[:6])
            t[b] = te[b]
    assert (t == 1.0).any()


def test_the_printed_block_algorithms_are_the_numba_ones():
    """kernels.matfun's φ_k of per-lane matrices (scaling and squaring) and Gauss–Jordan inverse, printed
    as C (what adaptive dense-L and exponential Rosenbrock CUDA threads run), against Numba's: lanes of
    norms 1e-3 .. 1e4 (0 .. 15 doublings), to 1e-13 of each lane's scale (FMA contraction aside, the same
    operations)."""
    from sdekit.kernels import matfun as mf
    phi_block, inverse_block = _host_functions(mf.phi_block, mf.inverse_block)
    rng = np.random.default_rng(5)
    m, B, kmax = 4, 7, 3
    N = rng.normal(size=(m, m, B))
    A = (N - 4.0 * np.eye(m)[:, :, None]) * np.logspace(-3, 3, B)     # stable: Re λ < 0
    ours, theirs = np.empty((kmax + 1, m, m, B)), np.empty((kmax + 1, m, m, B))
    phi_block(A, kmax, ours, mf.phi_block_work(m, kmax, B, A.dtype))
    mf.phi_block(A, kmax, theirs, mf.phi_block_work(m, kmax, B, A.dtype))
    scale = np.abs(theirs).max(axis=(1, 2))
    assert np.all(np.abs(ours - theirs).max(axis=(1, 2)) <= 1e-13 * scale)
    M = A + 3 * np.eye(m)[:, :, None]
    ours, theirs = np.empty((m, m, B)), np.empty((m, m, B))
    inverse_block(M, ours, mf.inverse_block_work(m, B, M.dtype))
    mf.inverse_block(M, theirs, mf.inverse_block_work(m, B, M.dtype))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14 * np.abs(theirs).max())


def _poisoned(source: str) -> str:
    """``source`` with every array the kernel leaves uninitialised (np.empty in the runtime: ``written before it is
    read``) filled with NaN (integers: -2^62) instead — a read before a write then shows in the results."""
    def fill(m):
        ctype, name, size = m.group(1), m.group(2), m.group(3)
        bad = "NAN" if ctype in ("double", "float", "real") else "(-4611686018427387904LL)"
        return (f"{ctype} {name}_data[{size}]; for (long long q_ = 0; q_ < ({size}); ++q_) {name}_data[q_] = {bad};")
    out, count = re.subn(r"([\w ]+?) (\w+)_data\[(.*)\];   /\* written before it is read \*/", fill, source)
    return out if count else source


@pytest.mark.parametrize("method, noise, kw, uninitialised", [
    ("EM", "general", dict(dt=0.01), 5), ("SRA1", "diagonal", dict(rtol=1e-3, atol=1e-3), 8),
    ("Exprb43", None, dict(rtol=1e-7, atol=1e-9), 1)])
def test_the_uninitialised_buffers_are_written_before_they_are_read(monkeypatch, method, noise, kw, uninitialised):
    """Allocations that are np.empty in the runtime (the Brownian tree's stacks and scratch, kernels.brownian; the
    φ-block work arrays, kernels.matfun) are left uninitialised by a CUDA thread — no ~8 KiB (m = 4) to ~20 KiB
    (adaptive) of local memory zeroed per trajectory: filled with NaN / -2^62 in the host build, the trajectories,
    retcodes and step counts are the unpoisoned build's, bit for bit (SDEs, and an adaptive exponential Rosenbrock
    method on a dense L)."""
    from sdekit.kernels import cuda_backend
    ens = ensemble("dense", n=9) if noise is None else sde_ensemble(noise, next(m for m in SDE if m.name == method))
    want = sk.solve(ens, method, backend="cuda-host", **kw)
    build = cuda_backend.host_library
    poisoned = []
    monkeypatch.setattr(cuda_backend, "host_library", lambda src: build(poisoned.append(_poisoned(src)) or poisoned[-1]))
    got = sk.solve(ens, method, backend="cuda-host", **kw)
    assert poisoned and poisoned[-1].count("q_ = 0") >= uninitialised, poisoned[-1].count("q_ = 0")
    np.testing.assert_array_equal(got.y, want.y)
    assert list(got.retcodes) == list(want.retcodes) and got.stats == want.stats and np.all(np.isfinite(got.y))


#: PTX arithmetic on doubles and float <-> double conversions (``cvt`` between f32 and f64)
_PTX_F64 = r"^\s+(?:(?:add|sub|mul|fma|div|neg|abs|min|max|sqrt|rcp|setp)[.a-z0-9]*\.f64|cvt[.a-z0-9]*(?:f64\.f32|f32\.f64))\b"


@pytest.mark.parametrize("method", ["Tsit5", "ETDRK4"])
def test_a_float32_kernel_computes_in_float32(method):
    """A float32 ODE kernel's stages, model and network run in float32: no double arithmetic and no float <-> double
    conversion in its PTX (double literals used to promote them: 138 f64 operations and 124 conversions in the
    fixed-step Lorenz Tsit5 kernel; FP64 and conversions run at 1/2 to 1/64 of the FP32 rate on GPUs).  The
    model is autonomous, so no time is passed; sin, exp, tanh, powers, a Piecewise, a dense per-trajectory L and an
    MLP; the float64 kernel has the same arithmetic in double."""
    pytest.importorskip("nvidia.cuda_nvrtc", reason="nvidia-cuda-nvrtc-cu12 (the test extras) is not installed")
    import re
    from sdekit.kernels.cuda_backend import nvrtc_ptx
    y = sk.states("y", 3)
    k = sk.params("k")
    net = sk.MLP("f", [3, 8, 3], activation="tanh")
    L = sp.Matrix([[-2, 1, 0], [-1, -3, sp.Rational(1, 2)], [0, -sp.Rational(1, 2), -4]])
    N = sp.Matrix([sp.sin(y[1]) / 3, sp.tanh(y[0]) * y[2] - y[1] ** 3 / 8,
                   sp.Piecewise((sp.exp(-y[0] ** 2), y[0] > 0), (1 - y[0] ** 2 / 2, True))]) + net(y)
    form = sk.ODE(y, k * L * y + N).form
    m = next(x for x in CATALOGUE if x.name == method)
    counts = {}
    for dtype in ("float32", "float64"):
        ptx = nvrtc_ptx(cuda_source(form, build_scheme(form, m), dtype, False, CUDA_DEVICE_FUNCTIONS))
        # CUDA's own sinf reduces |x| > 105615 in double (Payne–Hanek): its multiply by π/2·2^-64 and the
        # conversion back are libdevice's slow path, not the kernel's arithmetic
        ptx = re.sub(r".*0d3BF921FB54442D19;\n\s+cvt\.rn\.f32\.f64.*\n", "", ptx)
        counts[dtype] = len(re.findall(_PTX_F64, ptx, re.M))
    assert counts["float32"] == 0 and counts["float64"] > 20, counts


def test_the_brownian_trees_split_search_has_no_64_bit_division_on_the_gpu():
    """The tree's split-point search (``kernels.brownian.coarsest_point``) divides by 5^k, k < TREE_POW5 + 1: its
    constant-trip loop prints unrolled (``print_c_function.UNROLL_TRIPS``), so each division is by a constant and
    compiles to a multiplication.  As a loop it left 10 ``div.s64`` in an EM kernel's PTX, a ~80-instruction
    subroutine each on sm_90, ~97 of them a step at dt = 0.01 (a helper's count) against the whole network's ~2600."""
    pytest.importorskip("nvidia.cuda_nvrtc", reason="nvidia-cuda-nvrtc-cu12 (the test extras) is not installed")
    import re
    from sdekit.kernels.cuda_backend import nvrtc_ptx
    em = next(m for m in SDE if m.name == "EM")
    source = _emitted(em, False, "float32")
    assert "SDEKIT_UNROLL for (_ = 0; _ < (TREE_POW5 + 1LL)" in source
    assert not re.search(r"\b(div|rem)\.[su]64", nvrtc_ptx(source, arch="compute_90"))


# ---- arrays on the device: the API boundary and the array-step kernel ----------------------------------

class _FakeCupyArray:
    """Stands for a CuPy array without a GPU: what sdekit reads of one (its module, the CUDA array
    interface, ``get``)."""

    __module__ = "cupy._core.core"
    __cuda_array_interface__ = {}

    def __init__(self, a):
        self.a = np.asarray(a)

    def get(self):
        return self.a.copy()


def test_cuda_array_inputs_give_device_outputs(monkeypatch):
    """CuPy arrays (or torch CUDA tensors) as y0, params and weights are read through the host; ``sol.y``
    comes back on the device (``kernels.cuda_arrays.to_device``: CuPy), host inputs stay numpy."""
    from sdekit.kernels import cuda_arrays
    rng = np.random.default_rng(3)
    ens_host = ensemble("diagonal", n=5)
    y0 = ens_host.y0.copy()
    k = ens_host.problem.params["k"].copy()
    prob = sk.ODEProblem(model("diagonal"), y0=np.array([0.5, -0.2, 1.0]), tspan=(0.0, 1.0),
                         params={"k": _FakeCupyArray(k)})
    ens = sk.Ensemble(prob, y0=_FakeCupyArray(y0))
    assert ens.on_device and prob.on_device and not ens_host.on_device
    moved = []
    monkeypatch.setattr(cuda_arrays, "to_device", lambda a: moved.append(a) or _FakeCupyArray(a))
    sol = sk.solve(ens, "RK4", dt=0.05, backend="numpy")
    ref = sk.solve(ens_host, "RK4", dt=0.05, backend="numpy")
    assert isinstance(sol.y, _FakeCupyArray) and len(moved) == 1
    np.testing.assert_array_equal(sol.y.get(), ref.y)
    chunked = sk.solve(ens, "RK4", dt=0.05, backend="numpy", chunk_size=2)      # solve_chunked too
    assert isinstance(chunked.y, _FakeCupyArray) and len(moved) == 2
    np.testing.assert_array_equal(chunked.y.get(), ref.y)
    assert isinstance(sk.solve(ens_host, "RK4", dt=0.05, backend="numpy").y, np.ndarray)
    assert not cuda_arrays.is_cuda_array(rng.normal(size=3))


@pytest.fixture
def fake_cupy():
    """tests/fake_cupy.py as ``cupy``: backend="cuda" runs its own launch code, the kernel as host C++."""
    import fake_cupy as fake
    with fake.installed() as cp:
        yield cp


@pytest.mark.parametrize("method, make, kw", [
    ("RK4", lambda: ensemble("dense", n=5), dict(dt=0.05)),
    ("Tsit5", lambda: ensemble("diagonal", n=5), dict(rtol=1e-6, atol=1e-8)),
    ("EM", lambda: sde_ensemble("general", next(m for m in SDE if m.name == "EM"), n=5), dict(dt=0.01)),
    ("SRA1", lambda: sde_ensemble("diagonal", next(m for m in SDE if m.name == "SRA1"), n=5),
     dict(rtol=1e-3, atol=1e-3)),
    ("ROS34PW2", lambda: ensemble("diagonal", n=5), dict(rtol=1e-6, atol=1e-8))])
def test_backend_cuda_runs_its_launch_code_through_a_stand_in_for_cupy(fake_cupy, method, make, kw):
    """``CudaKernel`` on tests/fake_cupy.py: its launch (outputs allocated on the device, the host inputs copied
    in, launch configuration, events) gives cuda-host's numbers exactly (and cuda-host is Numba's, tests above).
    Host inputs: sol.y is numpy, the saved states copied back once (and the empty outputs never copied in).
    Device inputs (y0 and the per-trajectory parameter k, which L and G depend on): no copy of anything per
    trajectory either way but the retcodes and step counts read back — y0 and k are validated, laid out and read
    on the device (the explicit methods print L's entries, k a kernel argument; adaptive ROS34PW2 reads L = k L₀,
    formed on the device, for its per-thread resolvents), and sol.y is the device array the kernel wrote."""
    from sdekit.kernels.backend import Chunk
    from sdekit.solve import plan
    ens = make()
    want = sk.solve(ens, method, backend="cuda-host", **kw)
    got = sk.solve(ens, method, backend="cuda", **kw)
    assert type(got.y) is np.ndarray and got.backend == "cuda"
    np.testing.assert_array_equal(got.y, want.y)
    assert list(got.retcodes) == list(want.retcodes) and got.stats == want.stats     # (cuda-host is Numba's: above)
    n, d = ens.y0.shape
    saved = (got.y.shape[1], d, n)                          # the kernel's output (nsave, d, n)
    fake_cupy.reset()
    sk.solve(ens, method, backend="cuda", **kw)
    assert [c for c in fake_cupy.COPIES["log"] if c[1] == saved] == [("to_host", saved)], fake_cupy.COPIES["log"]
    small = n * (1 + 3 * 8)                                 # retcodes (int8) and step counts (3 x int64)

    on_device = _on_the_device(ens, fake_cupy)
    fake_cupy.reset()
    sol = sk.solve(on_device, method, backend="cuda", **kw)
    assert type(sol.y) is fake_cupy.ndarray
    assert fake_cupy.COPIES["to_host"] <= small, [c for c in fake_cupy.COPIES["log"] if c[0] == "to_host"]
    read_back = {("to_host", (n,)), ("to_host", (3, n))}
    assert [c for c in fake_cupy.COPIES["log"] if n in c[1] and c not in read_back] == [], fake_cupy.COPIES["log"]
    np.testing.assert_array_equal(sol.y.get(), want.y)
    p = plan(on_device, method, backend="cuda", **kw)
    p.kernel.run(p.inputs, Chunk(0, p.n))
    assert isinstance(p.kernel.last_launch_s, float)     # recorded (its value is not asserted: no timing in tests)
    chunked = sk.solve(on_device, method, backend="cuda", chunk_size=2, **kw)      # chunks gather on the host
    assert type(chunked.y) is fake_cupy.ndarray
    np.testing.assert_array_equal(chunked.y.get(), want.y)


def _on_the_device(ens, cp):
    """The ensemble with its y0 and per-trajectory k given as (stand-in) CuPy arrays: kept there."""
    prob = ens.problem
    prob = type(prob)(prob.model, y0=prob.y0, tspan=prob.tspan, params={"k": cp.asarray(prob.params["k"])})
    on_device = sk.Ensemble(prob, y0=cp.asarray(ens.y0), seed=ens.seed)
    assert type(on_device.y0) is cp.ndarray and type(prob.params["k"]) is cp.ndarray
    return on_device


def test_device_inputs_of_a_method_with_operator_tables(fake_cupy):
    """ETDRK4 on L = k L₀, k per trajectory on the device: L is formed there, but its φ(c hL) tables are computed
    on the host (kernels.linear, the kernels' one definition), so L (n·d² numbers) is read back once and the
    tables go in; y0 and k are not copied.  The numbers are cuda-host's from host inputs."""
    ens = ensemble("dense", n=5)
    want = sk.solve(ens, "ETDRK4", dt=0.05, backend="cuda-host")
    on_device = _on_the_device(ens, fake_cupy)
    fake_cupy.reset()
    sol = sk.solve(on_device, "ETDRK4", dt=0.05, backend="cuda")
    per_trajectory = [c for c in fake_cupy.COPIES["log"] if 5 in c[1]]
    assert sorted(c for c in per_trajectory if c[0] == "to_host") == [("to_host", (3, 5)), ("to_host", (5,)),
                                                                       ("to_host", (5, 3, 3))], per_trajectory
    assert all(len(shape) == 4 for way, shape in per_trajectory if way == "to_device"), per_trajectory  # (class, n, d, d)
    np.testing.assert_array_equal(sol.y.get(), want.y)


def test_a_float32_y0_on_the_device_is_read_as_it_is(fake_cupy):
    """A float32 y0 on the device is validated and kept as it is (it used to be copied to float64 there, and a float32
    kernel cast it back); both kernels' numbers are those of the same values from the host, and it pickles as
    float32."""
    import pickle
    ens = ensemble("diagonal", n=5)
    Y0 = fake_cupy.asarray(ens.y0.astype(np.float32))
    on_device = sk.Ensemble(ens.problem, y0=Y0)
    assert on_device.y0 is Y0
    from_host = sk.Ensemble(ens.problem, y0=ens.y0.astype(np.float32))
    assert from_host.y0.dtype == np.float64 and from_host == on_device
    for dtype in ("float32", "float64"):
        got = sk.solve(on_device, "RK4", dt=0.05, backend="cuda", dtype=dtype)
        want = sk.solve(from_host, "RK4", dt=0.05, backend="cuda-host", dtype=dtype)
        assert got.y.dtype == dtype
        np.testing.assert_array_equal(got.y.get(), want.y)
    back = pickle.loads(pickle.dumps(on_device))
    assert back.y0.dtype == np.float32 and back == from_host


def test_inputs_on_the_device_are_validated_there_and_pickle_to_the_host(fake_cupy):
    """A CUDA y0 or per-trajectory parameter is checked on the device (one flag read back): NaN, a wrong shape or
    a non-number is a ValueError naming it; a pickle holds host arrays and equals the host ensemble."""
    import pickle
    ens = ensemble("diagonal", n=5)
    bad = ens.y0.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="ensemble y0 contains NaN"):
        sk.Ensemble(ens.problem, y0=fake_cupy.asarray(bad))
    with pytest.raises(ValueError, match=r"ensemble y0 must have shape \(n, 3\)"):
        sk.Ensemble(ens.problem, y0=fake_cupy.asarray(ens.y0[:, :2]))
    prob = ens.problem
    for k, why in ((np.array([1.0, np.inf]), "contains NaN or Inf"), (np.array([1j, 2.0]), "must be real numbers")):
        with pytest.raises(ValueError, match=f"parameter 'k' {why}"):
            type(prob)(prob.model, y0=prob.y0, tspan=prob.tspan, params={"k": fake_cupy.asarray(k)})
    fake_cupy.reset()
    on_device = _on_the_device(ens, fake_cupy)
    assert [c for c in fake_cupy.COPIES["log"] if c[0] == "to_host"] == []       # validated without reading y0, k
    back = pickle.loads(pickle.dumps(on_device))
    assert type(back.y0) is np.ndarray and type(back.problem.params["k"]) is np.ndarray
    assert back == ens and on_device == ens


def test_a_per_trajectory_linear_part_is_formed_on_the_device(fake_cupy):
    """L = L(params) from per-trajectory values on the device and host scalars (numpy scalars among CuPy arrays:
    CuPy refuses 0-d numpy arrays) is formed there, equal to the host's; an entry CuPy cannot take (a Piecewise:
    lambdify's select gets a Python True, which cupy.select refuses, as the stand-in does) is computed on the
    host instead (k read back once).  The scheme reads L (ROS34PW2's resolvents)."""
    from sdekit.codegen.builders import build_scheme as scheme_of
    from sdekit.solve import _linear_value
    y = sk.states("y", 2)
    k, a = sk.params("k a")
    n = 7
    k_host = np.random.default_rng(0).uniform(0.5, 1.5, n)
    for L, moved in ((sp.Matrix([[a * k - 4, sp.sin(k)], [sp.exp(-k) / 2, -3]]), []),
                     (sp.diag(sp.Piecewise((-k, k > 1), (-2 * k, True)), -a), [("to_host", (n,))])):
        model = sk.ODE(y, L * y + sp.Matrix([sp.sin(y[1]), 0]))
        scheme = scheme_of(model.form, next(m for m in CATALOGUE if m.name == "ROS34PW2"))
        want = _linear_value(model, model.form, scheme, {"k": k_host, "a": np.asarray(2.5)})
        k_device = fake_cupy.asarray(k_host)
        fake_cupy.reset()
        got = _linear_value(model, model.form, scheme, {"k": k_device, "a": np.asarray(2.5)})
        assert type(got) is (fake_cupy.ndarray if not moved else np.ndarray)
        assert [c for c in fake_cupy.COPIES["log"] if c[1] != ()] == moved, fake_cupy.COPIES["log"]
        np.testing.assert_array_equal(got.get() if not moved else got, want)


def test_a_single_problem_from_the_device_records_its_adaptive_steps_there(fake_cupy):
    """One problem saving every accepted step (the adaptive record buffer): its step times come back to the host,
    its states stay on the device."""
    one = sk.ODEProblem(model("diagonal"), y0=fake_cupy.asarray(np.array([0.5, -0.2, 1.0])), tspan=(0.0, 1.0),
                        params={"k": 1.0})
    host = sk.ODEProblem(one.model, y0=np.array([0.5, -0.2, 1.0]), tspan=(0.0, 1.0), params={"k": 1.0})
    sol, want = (sk.solve(p, "Tsit5", backend="cuda", rtol=1e-6, atol=1e-8) for p in (one, host))
    assert type(sol.y) is fake_cupy.ndarray and type(sol.t) is np.ndarray and len(sol.t) > 5
    np.testing.assert_array_equal(sol.t, want.t)
    np.testing.assert_array_equal(sol.y.get(), want.y)


def test_the_array_step_kernel_through_a_stand_in_for_cupy(fake_cupy):
    """``fused_cuda`` (a sampler's stage update on CUDA arrays) launches the generated ``lincomb`` kernel in passes
    of WIDTH arrays: kernels.lincomb's float64 sums in k order, in the arrays' type and shape."""
    from sdekit.kernels.cuda_arrays import fused_cuda
    from sdekit.kernels.lincomb import fused
    rng = np.random.default_rng(0)
    for dtype, tol in (("float64", 1e-15), ("float32", 1e-7)):
        arrays = [rng.normal(size=(30, 70)).astype(dtype) for _ in range(11)]      # two passes of WIDTH arrays
        coefs = rng.normal(size=11)
        got = fused_cuda(coefs, [fake_cupy.asarray(a) for a in arrays])
        assert type(got) is fake_cupy.ndarray and got.shape == (30, 70) and got.dtype == dtype
        want = fused(coefs, [a.ravel() for a in arrays]).reshape(30, 70)
        assert np.abs(got.get() - want).max() <= tol * np.abs(want).max()


def test_the_array_step_kernel_is_the_cpu_fused_pass():
    """The generated element-wise CUDA kernel (``lincomb``: a sampler's stage update Σ c_k a_k), compiled as
    host C++, against kernels.lincomb's Numba pass: float64 sums in k order, equal within FMA rounding."""
    import ctypes
    from sdekit.codegen.emit_cuda import lincomb_source
    from sdekit.kernels.cuda_backend import host_library
    from sdekit.kernels.lincomb import WIDTH, fused
    rng = np.random.default_rng(0)
    for dtype, tol in (("float64", 1e-15), ("float32", 1e-7)):
        lib = host_library(lincomb_source(dtype, WIDTH))
        arrays = [rng.normal(size=1000).astype(dtype) for _ in range(WIDTH)]
        coefs = rng.normal(size=WIDTH)
        out = np.empty(1000, dtype=dtype)
        lib.lincomb_host(ctypes.c_longlong(1000), *map(ctypes.c_double, coefs),
                         *[ctypes.c_void_p(a.ctypes.data) for a in arrays], ctypes.c_void_p(out.ctypes.data))
        want = fused(coefs, arrays)
        assert np.abs(out - want).max() <= tol * np.abs(want).max()


def test_the_array_step_kernel_compiles_with_nvrtc():
    pytest.importorskip("nvidia.cuda_nvrtc", reason="nvidia-cuda-nvrtc-cu12 (the test extras) is not installed")
    from sdekit.codegen.emit_cuda import lincomb_source
    from sdekit.kernels.cuda_backend import nvrtc_ptx
    for dtype in ("float32", "float64"):
        assert ".visible .entry lincomb(" in nvrtc_ptx(lincomb_source(dtype, 8))


# ---- on a GPU (run only where CuPy finds a CUDA device; benchmarks/cuda_device.py runs the same and times it) --


@pytest.fixture
def gpu():
    from sdekit.kernels.cuda_backend import require_gpu
    try:
        return require_gpu()
    except RuntimeError as e:
        pytest.skip(f"no GPU here: {e}")


@pytest.mark.gpu
@pytest.mark.parametrize("method, make, kw", [
    ("RK4", lambda: ensemble("dense"), dict(dt=0.01)),
    ("Tsit5", lambda: ensemble("diagonal"), dict(rtol=1e-7, atol=1e-9)),
    ("Exprb43", lambda: ensemble("dense", n=9), dict(dt=0.05)),
    ("EM", lambda: sde_ensemble("general", next(m for m in SDE if m.name == "EM")), dict(dt=0.01)),
    ("SRA1", lambda: sde_ensemble("diagonal", next(m for m in SDE if m.name == "SRA1")), dict(dt=0.01))])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_gpu_agrees_with_numba(gpu, method, make, kw, dtype):
    """backend="cuda" on the device: the Numba kernel's trajectories (float64 1e-12 of scale; float32 within
    its rounding; the GPU contracts a·b + c into FMAs as Numba does)."""
    ens = make()
    _agree(sk.solve(ens, method, backend="numba", dtype=dtype, **kw), sk.solve(ens, method, backend="cuda", dtype=dtype, **kw),
           dtype, 1e-11 if dtype == "float64" else 1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("method, kw", [("RK4", dict(dt=0.05)), ("Tsit5", dict(rtol=1e-6, atol=1e-8))])
def test_device_inputs_come_back_on_the_device(gpu, method, kw):
    """CuPy and torch CUDA y0: the kernel's saved states are sol.y (a CuPy array), Numba's numbers; host inputs
    give numpy; the launch's kernel time is read by CUDA events."""
    ens = ensemble("diagonal", n=5)
    want = sk.solve(ens, method, backend="numba", **kw).y
    inputs = [gpu.asarray(ens.y0)]
    try:
        import torch
        if torch.cuda.is_available():
            inputs.append(torch.as_tensor(ens.y0, device="cuda"))
    except ImportError:
        pass
    for y0 in inputs:
        sol = sk.solve(sk.Ensemble(ens.problem, y0=y0), method, backend="cuda", **kw)
        assert isinstance(sol.y, gpu.ndarray)
        np.testing.assert_allclose(gpu.asnumpy(sol.y), want, rtol=1e-11, atol=1e-12)
    # a float32 y0 on the device is read as it is (no float64 copy): a float32 solve gives Numba's float32 numbers
    # from the same values, within float32 rounding (CUDA does not contract as Numba does)
    y32 = gpu.asarray(ens.y0, dtype=np.float32)
    on_device = sk.Ensemble(ens.problem, y0=y32)
    assert on_device.y0 is y32
    want32 = sk.solve(sk.Ensemble(ens.problem, y0=ens.y0.astype(np.float32)), method, backend="numba", dtype="float32",
                      **kw).y
    got32 = sk.solve(on_device, method, backend="cuda", dtype="float32", **kw).y
    assert isinstance(got32, gpu.ndarray) and got32.dtype == np.float32
    np.testing.assert_allclose(gpu.asnumpy(got32), want32, rtol=0, atol=2e-5 * np.abs(want32).max())
    assert type(sk.solve(ens, method, backend="cuda", **kw).y) is np.ndarray
    from sdekit.kernels.backend import Chunk
    from sdekit.solve import plan
    p = plan(ens, method, backend="cuda", **kw)
    p.kernel.run(p.inputs, Chunk(0, p.n))
    assert isinstance(p.kernel.last_launch_s, float)     # recorded by CUDA events (not asserted on: no timing in tests)


@pytest.mark.gpu
def test_the_array_step_kernel_on_the_gpu(gpu):
    from sdekit.kernels.cuda_arrays import fused_cuda
    from sdekit.kernels.lincomb import fused
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=70000) for _ in range(11)]      # two passes of WIDTH arrays
    coefs = rng.normal(size=11)
    got = fused_cuda(coefs, [gpu.asarray(a) for a in arrays])
    np.testing.assert_allclose(gpu.asnumpy(got), fused(coefs, arrays), rtol=1e-13, atol=1e-13)


def test_the_host_optimisation_level_is_checked_and_names_the_library(monkeypatch):
    """$SDEKIT_HOST_OPT: a level g++ knows, else a ValueError naming it; a level other than the default gets its
    own library file, so a -O0 test build is never loaded by a default run."""
    from sdekit.kernels import cuda_backend
    monkeypatch.setenv("SDEKIT_HOST_OPT", "-O9")
    with pytest.raises(ValueError, match="SDEKIT_HOST_OPT='-O9'"):
        cuda_backend.host_opt()
    monkeypatch.setenv("SDEKIT_HOST_OPT", "-O0")
    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("cuda-host needs a C++ compiler")
    source = 'extern "C" int sdekit_probe(void) { return 7; }\n'
    assert cuda_backend.host_library(source).sdekit_probe() == 7
    monkeypatch.setenv("SDEKIT_HOST_OPT", "-O2")
    assert cuda_backend.host_library(source).sdekit_probe() == 7
    folder = cuda_backend.write_source(source, "kernel", ".cu").parent
    assert sorted(p.name for p in folder.glob("kernel*.so")) == ["kernel-O0.so", "kernel.so"]


def test_a_users_float_is_the_same_double_in_every_backend():
    """A float in the model (k = 0.1 + 0.2, which sympy prints as 0.300000000000000) is printed to the last bit
    (``lowering.float_text``) by the numpy, Numba and field printers as the C printer does, and by the host's
    functions of the params (``lowering.lambdify_exact``): one Euler step of y' = k y² from 3 is 3 + k·9 bit for bit
    on every backend (the printed 0.3 gave 5.699999999999999 on numpy and Numba, 5.7 on cuda-host); a float beyond
    the doubles keeps its digits (``inf`` is not a name in the generated code).  A float32 kernel's constants are the
    float32 nearest the double on every backend (the CUDA C printer's 9 digits rounded the decimal instead)."""
    k = 0.1 + 0.2
    y = sk.states("y", 1)
    prob = sk.ODEProblem(sk.ODE(y, sp.Matrix([k * y[0] ** 2])), y0=[3.0], tspan=(0.0, 1.0))
    for backend in ("numpy", "numba", "cuda-host"):
        assert repr(k) in sk.inspect(prob.model, "Euler", backend=backend), backend
        assert sk.solve(prob, "Euler", dt=1.0, backend=backend).y[-1][0] == 3.0 + 1.0 * (k * 9.0), backend
    u = sk.field("u", 8)
    field = sk.FieldODE(u, linear=sk.laplacian(8, 0.1), nonlinear=k * u ** 2)
    assert repr(k) in sk.inspect(field, "ETDRK4", backend="numpy") and repr(k) in sk.inspect(field, "ETDRK4")
    c = sk.params("c")              # the host's functions of the params (here L = k c): the same double, e^k exactly
    linear = sk.ODEProblem(sk.ODE(y, sp.Matrix([k * c * y[0]])), y0=[3.0], tspan=(0.0, 1.0), params={"c": 1.0})
    for backend in ("numpy", "numba"):
        assert sk.solve(linear, "ETD1", dt=1.0, backend=backend).y[-1][0] == 3.0 * np.exp(k), backend
    # float32 kernels: the float32 nearest the double (the CUDA C printer's 1.31024188F was a float32 one ulp above)
    c = 1.3102418755589555
    one = sk.ODEProblem(sk.ODE(y, sp.Matrix([c * y[0] ** 2])), y0=[1.0], tspan=(0.0, 1.0))
    for backend in ("numpy", "numba", "cuda-host"):
        assert sk.solve(one, "Euler", dt=1.0, backend=backend, dtype=np.float32).y[-1][0] == np.float32(1) + np.float32(c)
    huge = sk.ODEProblem(sk.ODE(y, sp.Matrix([sp.Min(5.0, sp.exp(sp.Float(800.0)) * y[0] ** 2)])), y0=[0.5],
                         tspan=(0.0, 1.0))                 # a float beyond the doubles: its digits, read as inf
    for backend in ("numpy", "numba"):
        assert sk.solve(huge, "Euler", dt=0.5, backend=backend).y[-1][0] == 5.5, backend
