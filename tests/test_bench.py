"""`sdekit bench`: the command, the target bookkeeping, and the README table generated from the results."""
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import SUITE, main  # noqa: E402
from benchmarks.neural_sde import targets  # noqa: E402
from benchmarks.readme import README, readme_block, table  # noqa: E402


def test_readme_speed_table_is_generated_from_the_committed_results():
    assert readme_block(README.read_text()) == table().strip()
    assert "traj-steps/s" in table()


def test_bench_lists_and_refuses_unknown_names(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUITE)
    with pytest.raises(SystemExit):
        main(["no_such_benchmark"])
    assert "unknown benchmark no_such_benchmark" in capsys.readouterr().err
    from sdekit.cli import main as cli
    assert cli(["bench", "--list"]) == 0


def test_bench_name_help_says_what_it_measures(capsys):
    from sdekit.cli import main as cli
    assert cli(["bench", "distributed", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sdekit bench distributed [--quick]") and "LocalCluster of 1 and" in out
    assert main(["-h", "neural_sde", "adaptive_ensemble"]) == 0
    out = capsys.readouterr().out
    assert "Neural SDE ensemble benchmark" in out and "Adaptive ensemble benchmark" in out
    with pytest.raises(SystemExit):
        main(["--help"])                                    # no name: the suite's help
    assert "NAME --help: what it measures" in " ".join(capsys.readouterr().out.split())


def test_targets_say_met_or_by_how_much():
    row = lambda backend, rate: {"backend": backend, "n": 65536, "dtype": "float64", "dt": "0.01",  # noqa: E731
                                 "traj_steps_per_s": rate}
    got = {t["versus"]: t for t in targets([row("sdekit numba", 1e7), row("torchsde", 2e6),
                                            row("diffrax (UnsafeBrownianPath)", 1e7)])}
    assert got["torchsde"]["met"] and got["torchsde"]["speedup"] == pytest.approx(5.0)
    assert not got["diffrax (UnsafeBrownianPath)"]["met"] and got["diffrax (UnsafeBrownianPath)"]["target"] == 1.25
    assert "diffrax (VirtualBrownianTree)" not in got        # not measured: no target line


def test_pde_benchmark_runs_quick():
    """``sdekit bench pde --quick`` runs end to end (small sizes, temporary folder): every problem has sdekit and
    scipy rows with finite errors, and the Hochbruck–Ostermann orders table shows HochOst4's 4 and ETDRK4's fall."""
    from benchmarks import pde
    result = pde.main(quick=True)
    assert [p["problem"].split()[0] for p in result["problems"]] == ["Allen–Cahn", "Kuramoto–Sivashinsky", "Gray–Scott"]
    for p in result["problems"]:
        solvers = {r["solver"].split()[0] for r in p["rows"]}
        assert solvers == {"sdekit", "scipy"} and all(np.isfinite(r["error"]) for r in p["rows"] if r["status"] == "Success")
    orders = {r["method"]: r["orders"] for r in result["orders"]["rows"]}
    assert min(orders["HochOst4"]) > 3.5 and max(orders["ETDRK4"]) < 3.2, orders


def test_diffusion_benchmark_runs_quick():
    """``sdekit bench diffusion --quick``: every sampler has both timings and its quality against diffusers."""
    from benchmarks import diffusion
    result = diffusion.main(quick=True)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    rows = result["rows"]
    assert {r["method"] for r in rows} == set(diffusion.PAIRS)
    assert all(r["sdekit_overhead_ms"] > 0 and r["diffusers_overhead_ms"] > 0 for r in rows)
    # quality: on diffusers' own grid sdekit's samples are diffusers' (but DPM-Solver++(3M): the exact D2 weight)
    for r in result["quality"]:
        same = abs(r["diffusers"] - r["sdekit_same_grid"]) < 1e-6 * r["diffusers"]
        assert same == (r["method"] != "dpmsolver++3m"), r


def test_pde_targets_say_met_or_missed_and_what_limits_them():
    from benchmarks.pde import target_lines
    p = {"problem": "Allen–Cahn 1-D n = 256",
         "time_at_1e6": {"sdekit Krogstad": 1.0, "scipy BDF": 7.0, "scipy Radau": 5.0, "diffrax Tsit5": 39.0}}
    line = target_lines(p)[0]
    assert "≥ 10× scipy: **missed** (5×)" in line and "≥ 5× diffrax Tsit5: met (39×)" in line and "prime" in line
    p["time_at_1e6"]["diffrax Tsit5"] = None
    assert "≥ 5× diffrax Tsit5: not bracketed" in target_lines(p)[0]


def test_the_gpu_run_script_runs_on_the_host(tmp_path):
    """benchmarks/cuda_device.py's dry run (``--host``: tests/fake_cupy.py standing in for CuPy, the kernels as host
    C++, small sizes, a temporary folder): the script a lent GPU runs, once, has no error left for the device to
    find; each stage's rows are saved as they come (``out``), they are measured, the states stay on the "device", the peak is read from the device's properties
    (CUDA 13: the clock by attribute) and the targets say met or missed.  Without CuPy the device run itself says
    so and returns None (and the stand-in is gone again)."""
    from benchmarks import cuda_device
    result = cuda_device.main(host=True, out=str(tmp_path))
    assert result["device"].endswith("(host dry run: not GPU figures)")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"cuda_device.{x}" for x in ("json", "md", "partial.json", "png")]
    assert result["peak_flops"]["float32"] == 132 * 128 * 2 * 1.98e9
    assert all(r["max_abs_diff"] <= 1e-12 for r in result["agreement"] if r["dtype"] == "float64")
    assert {(r["dtype"], r["n"]) for r in result["lorenz"]} == {(d, n) for d in ("float32", "float64") for n in (64, 256)}
    assert [(r["dtype"], r["n"]) for r in result["neural_sde_layer_loops"]] == [("float32", 64)]
    assert result["failed"] == {} and [(r["dtype"], r["n"]) for r in result["noise_only"]] == [("float32", 64),
                                                                                                ("float64", 64)]
    rows = result["lorenz"] + result["neural_sde"] + result["neural_sde_layer_loops"] + result["noise_only"]
    assert all(r["all_success"] and r["traj_steps_per_s"] > 0 and r["states_on"] == "cupy" for r in rows)
    assert all(set(r["resources"]) == {"threads_per_block", "registers", "local_bytes", "shared_bytes"} for r in rows)
    md = (tmp_path / "cuda_device.md").read_text()
    assert "- neural_sde float32: 128 threads per block, 0 registers" in md and "- lorenz float64:" in md
    assert result["array_step"]["max_abs_diff"] < 1e-6
    assert result["targets"][0].startswith("- Lorenz, float32:") and result["targets"][0].endswith("missed)")
    import importlib.util
    if importlib.util.find_spec("cupy") is None:
        assert cuda_device.main() is None


@pytest.mark.parametrize("registers, shared, threads, want, limit", [
    (24, 0, 256, 1.0, "warps"), (40, 0, 128, 0.75, "registers"), (64, 0, 128, 0.5, "registers"),
    (128, 0, 128, 0.25, "registers"), (255, 0, 128, 0.125, "registers"), (16, 0, 32, 0.5, "blocks"),
    (32, 100 * 1024, 256, 0.25, "shared memory")])
def test_occupancy_follows_the_cuda_rules_for_compute_capability_9(registers, shared, threads, want, limit):
    """benchmarks/cuda_static.occupancy against the CUDA occupancy calculator's cases for sm_90: 64 K registers an SM
    allocated per warp in units of 256, 64 warps, 32 blocks, 228 KiB of shared memory."""
    from benchmarks.cuda_static import occupancy
    got = occupancy(registers, shared, threads)
    assert got["occupancy"] == pytest.approx(want) and got["limited_by"] == limit


def test_the_static_read_of_the_gpu_kernels_names_their_resources_and_mix():
    """``sdekit bench cuda_static``'s analysis (NVRTC → PTX → ptxas -v for sm_90, no GPU): the Lorenz float32 kernel
    has no double operation and its time loop is one step (no inner loop), so its ceiling is exact arithmetic on
    its instruction count; the neural SDE's network is its own device function with the MLP's 1280 multiply-adds in
    its FMAs, and a float32 network caps the FLOP fraction below 100%."""
    from benchmarks import cuda_static
    why = cuda_static.missing()
    if why:
        pytest.skip(why)
    result = cuda_static.run()
    bounded = [r for r in result["rows"] if "__launch_bounds__" in r["kernel"]]
    rows = {(r["kernel"].split()[0], r["dtype"]): r for r in result["rows"] if r not in bounded}
    lorenz = rows["Lorenz", "float32"]
    assert lorenz["loop"].get("f64", 0) == 0
    assert lorenz["exact_per_step"] and lorenz["registers"] > 0 and 0 < lorenz["occupancy"] <= 1
    assert lorenz["ceiling_traj_steps_per_s"] == pytest.approx(132 * 128 * 1.98e9 / lorenz["step_issue_slots"])
    assert rows["Lorenz", "float64"]["loop"]["f64"] > 100
    net = rows["neural", "float32"]["functions"]["rhs_full"]
    assert net["f32 fma"] >= 1280 and net.get("f64", 0) == 0
    assert 0 < rows["neural", "float32"]["network_fp32_ceiling"] < 1
    assert rows["neural", "float32"]["loop"]["calls"] == {"rhs_full": 1}
    assert len(result["reading"]) == 3
    assert [r["registers"] <= 128 for r in bounded] == [True]                # print_cuda.LAUNCH_BOUNDS = (128, 4)


def test_a_failing_stage_of_the_gpu_run_keeps_the_others(tmp_path, monkeypatch):
    """A stage that raises on the device is recorded with its traceback (``failed``) and the run goes on: the
    figures measured before and after it are written (the device's minutes are not spent twice)."""
    from benchmarks import cuda_device

    def broken(n):
        raise RuntimeError("no such CuPy function on this image")
    monkeypatch.setattr(cuda_device, "array_step", broken)
    result = cuda_device.main(host=True, out=str(tmp_path))
    assert list(result["failed"]) == ["array_step"] and "no such CuPy function" in result["failed"]["array_step"]
    assert result["lorenz"] and result["agreement"]
    assert "Stage array_step failed" in (tmp_path / "cuda_device.md").read_text()
