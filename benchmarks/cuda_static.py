"""Issue 15's GPU kernels read without a GPU (`sdekit bench cuda_static`): what an H100 would be given.

Each benchmark kernel of benchmarks/cuda_device.py (the DiffEqGPU Lorenz Tsit5 at fixed dt, the neural SDE's EM)
is printed as ``backend="cuda"`` prints it, compiled to PTX by NVRTC for compute_90 (what CuPy does on an H100)
and assembled by ``ptxas -arch=sm_90 -v`` (nvcc's; no GPU needed).  Per kernel, float32 and float64:

* ptxas's registers per thread, stack (local memory) bytes, spills and static shared bytes, and the occupancy
  they allow at the backend's block size (CUDA occupancy rules for compute capability 9.0);
* the instruction mix of the PTX, per function: a device function the kernel calls (``.func``; the network's
  layers are one) and the kernel's own text;
* the instructions of one pass over the time loop's text with the device functions it calls, and from them
  trajectory-steps/s if every SM issued one instruction per lane and cycle (4 warp schedulers × 32 lanes; a
  double operation counted twice, the FP64 lanes being half the FP32 lanes; a 64-bit integer division as its
  subroutine's ~80 instructions) at the H100 SXM5's 132 SMs and
  1.98 GHz boost clock (NVIDIA H100 whitepaper).  Where the loop has no inner loop and no branch skips much of it
  (Lorenz: one step is the loop's text) that is a ceiling; where it has inner loops and rarely taken branches
  (the neural SDE's Brownian tree: its refinement loops, its save and retcode paths) it is an estimate of the
  order of magnitude, neither bound;
* for the network, its share: the FLOP of benchmarks/neural_sde.py's FLOPS_PER_STEP over its FP32 issue slots,
  the most of the FP32 peak the network's own instruction mix allows even if nothing else in a step cost a cycle.

These are read from the code, not measured: memory, latency and occupancy only lower what a GPU does.  The device run
(benchmarks/cuda_device.sh) measures.  Without ptxas (nvcc's toolkit) or NVRTC (nvidia-cuda-nvrtc-cu12) it says
which is missing and writes nothing.  Writes benchmarks/results/cuda_static.{json,md,png}.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from .common import machine, write

ARCH = "sm_90"
#: NVIDIA H100 SXM5 (whitepaper, compute capability 9.0): SMs, boost clock, lanes per SM per cycle, and the
#: per-SM limits of the occupancy rules (CUDA C Programming Guide, "Compute Capabilities", table 21)
H100 = dict(name="H100 SXM5", sms=132, clock_hz=1.98e9, fp32_lanes=128, fp64_lanes=64, issue_lanes=128,
            registers=65536, register_unit=256, max_warps=64, max_blocks=32, shared_bytes=228 * 1024,
            shared_reserved=1024, max_registers=255)
#: a PTX arithmetic instruction on floats: its operation and type
_FLOAT_OP = re.compile(r"^(?:@!?%p\d+\s+)?(fma|add|sub|mul|neg|abs|min|max|div|rcp|sqrt|rsqrt|ex2|lg2|tanh|sin|cos|"
                       r"setp|selp|cvt|copysign|testp)[.a-z0-9]*?\.(f32|f64)\b")
#: SASS instructions of a 64-bit integer division or remainder (``__cuda_sm20_div_s64``, a subroutine: sm_90 has no
#: such instruction), which PTX writes as one ``div.s64`` / ``rem.s64``
DIV64_SLOTS = 80
_LOOP_BRANCH = re.compile(r"bra(?:\.uni)?\s+(\$L__BB\d+_\d+);")


def kernels():
    """(name, method, ensemble maker, flops per step or None) of the device run's benchmarks."""
    from .cuda_device import lorenz
    from .neural_sde import FLOPS_PER_STEP, problem
    return [("Lorenz Tsit5 (fixed dt)", "Tsit5", lorenz, None),
            ("neural SDE EM (MLP 4-32-32-4)", "EM", lambda n: problem(n)[0], FLOPS_PER_STEP)]


def ptxas_resources(ptx: str) -> dict:
    """ptxas -v's figures for the ``kernel`` entry: registers, stack, spill and shared bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernel.ptx"
        path.write_text(ptx)
        done = subprocess.run(["ptxas", f"-arch={ARCH}", "-v", "-o", str(path.with_suffix(".cubin")), str(path)],
                              capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ptxas could not assemble the kernel:\n{done.stderr[-3000:]}")
    entry = done.stderr[done.stderr.index("entry function 'kernel'"):]

    def number(pattern, default=0):
        m = re.search(pattern, entry)
        return int(m.group(1)) if m else default
    return dict(registers=number(r"Used (\d+) registers"), stack_bytes=number(r"(\d+) bytes stack frame"),
                cumulative_stack_bytes=number(r"(\d+) bytes cumulative stack size"),
                spill_store_bytes=number(r"(\d+) bytes spill stores"), spill_load_bytes=number(r"(\d+) bytes spill loads"),
                shared_bytes=number(r"(\d+) bytes smem"))


def occupancy(registers: int, shared_bytes: int, threads: int, gpu=H100) -> dict:
    """Resident blocks and warps per SM and the occupancy (warps / max warps) of a kernel with ``registers`` per
    thread and ``shared_bytes`` per block at ``threads`` per block, by the occupancy rules (registers allocated per
    warp in units of ``register_unit``; each block's shared memory plus the 1 KiB the runtime reserves for it), and
    which limit binds."""
    warps = -(-threads // 32)
    per_warp = -(-max(registers, 1) * 32 // gpu["register_unit"]) * gpu["register_unit"]
    limits = {"registers": gpu["registers"] // (per_warp * warps), "warps": gpu["max_warps"] // warps,
              "blocks": gpu["max_blocks"],
              "shared memory": gpu["shared_bytes"] // (shared_bytes + gpu["shared_reserved"])}   # 1 KiB a block: CUDA's
    blocks = min(limits.values())
    return dict(threads_per_block=threads, blocks_per_sm=blocks, warps_per_sm=blocks * warps,
                occupancy=blocks * warps / gpu["max_warps"], limited_by=min(limits, key=limits.get))


def _instructions(text: str) -> list[str]:
    """The instruction lines of a PTX function body (declarations and labels left out)."""
    return [line.strip() for line in text.splitlines()
            if line.strip().endswith(";") and not line.strip().startswith((".reg", ".param", ".local", ".shared", "//"))]


def mix(lines: list[str]) -> dict:
    """Counts of PTX instructions by kind: float32 and float64 arithmetic (conversions included), fused multiply-
    adds of each, special functions, 64-bit integer divisions, shared / global / local memory, the rest (integer,
    control, moves)."""
    kinds = Counter()
    for line in lines:
        op = line.split()[1] if line.startswith("@") else line.split()[0]
        m = _FLOAT_OP.match(line)
        if m:
            kinds[m.group(2)] += 1
            kinds[f"{m.group(2)} fma"] += m.group(1) == "fma"
            kinds["special"] += m.group(1) in ("ex2", "lg2", "rcp", "sqrt", "rsqrt", "tanh", "sin", "cos") and ".approx" in op
        elif re.match(r"(div|rem)\.[su]64", op):
            kinds["int64 division"] += 1
        elif op.startswith(("ld.shared", "st.shared")):
            kinds["shared memory"] += 1
        elif op.startswith(("ld.global", "st.global", "ld.const")):
            kinds["global memory"] += 1
        elif op.startswith(("ld.local", "st.local")):
            kinds["local memory"] += 1
        else:
            kinds["other"] += 1
    kinds["total"] = len(lines)
    return dict(kinds)


def functions(ptx: str) -> dict:
    """{name: instruction mix} for the kernel entry and each device function the PTX keeps (``.func``)."""
    out = {}
    for m in re.finditer(r"^(?:\.visible |\.weak )?\.(?:entry|func)\s+(?:\([^)]*\)\s*)?(\w+)\(.*?^}", ptx, re.M | re.S):
        out[demangled(m.group(1))] = mix(_instructions(m.group(0)))
    return out


def demangled(name: str) -> str:
    """A C++-mangled PTX function name's identifier (``_Z8rhs_fullxdPKf...`` → ``rhs_full``)."""
    m = re.match(r"_Z(\d+)", name)
    return name[m.end():m.end() + int(m.group(1))] if m else name


def step_loop(ptx: str) -> dict | None:
    """The instruction mix of one pass through the kernel's time loop — the backward branch spanning the most
    instructions — with ``inner_loops``, the loops inside it (each counted once: a lower bound where there are
    any), and ``calls``, the device functions it calls; None where the kernel has no loop."""
    body = re.search(r"^\.visible \.entry kernel\(.*?^}", ptx, re.M | re.S).group(0).splitlines()
    labels = {line.strip()[:-1]: i for i, line in enumerate(body) if re.match(r"^\$L__BB\d+_\d+:$", line.strip())}
    loops = [(labels[m.group(1)], i) for i, line in enumerate(body)
             if (m := _LOOP_BRANCH.search(line)) and labels.get(m.group(1), i) < i]
    if not loops:
        return None
    first, last = max(loops, key=lambda span: span[1] - span[0])
    text = body[first:last + 1]
    inner = sum(1 for a, b in loops if first <= a and b <= last and (a, b) != (first, last))
    calls = Counter(demangled(f) for f in re.findall(r"\bcall(?:\.uni)?\s*(?:\(\w+\),\s*)?(\w+)\s*,", "\n".join(text)))
    return dict(mix(_instructions("\n".join(text))), inner_loops=inner, calls=dict(calls))


def issue_slots(kinds: dict, gpu=H100) -> float:
    """Issue slots of a mix: one a lane per instruction, two for a float64 operation (half the lanes), DIV64_SLOTS
    for a 64-bit integer division."""
    return (kinds.get("total", 0) + kinds.get("f64", 0) * (gpu["fp32_lanes"] / gpu["fp64_lanes"] - 1)
            + kinds.get("int64 division", 0) * (DIV64_SLOTS - 1))


def analyse(name, method, make, flops, dtype, gpu=H100) -> dict:
    """One kernel's resources, occupancy, instruction mix and ceilings."""
    import sdekit as sk
    from sdekit.kernels.cuda_backend import THREADS_PER_BLOCK, nvrtc_ptx
    source = sk.inspect(make(16), method, backend="cuda", dtype=dtype)
    ptx = nvrtc_ptx(source, arch="compute_" + ARCH.split("_")[1])
    res = ptxas_resources(ptx)
    funcs = functions(ptx)
    loop = step_loop(ptx)
    row = dict(kernel=name, method=method, dtype=dtype, source_lines=source.count("\n"), **res,
               **occupancy(res["registers"], res["shared_bytes"], THREADS_PER_BLOCK, gpu), functions=funcs, loop=loop)
    if loop is not None:
        slots = issue_slots(loop) + sum(issue_slots(funcs[f]) * k for f, k in loop["calls"].items() if f in funcs)
        row["step_issue_slots"] = slots
        row["exact_per_step"] = loop["inner_loops"] == 0
        row["ceiling_traj_steps_per_s"] = gpu["sms"] * gpu["clock_hz"] * gpu["issue_lanes"] / slots
    network = [f for f in funcs if f == "rhs_full"]
    if flops and network and dtype == "float32":
        net = funcs[network[0]]
        row["network_fp32_ceiling"] = flops / (2 * issue_slots(net))   # peak: 2 flops per FP32 lane and cycle
    return row


def markdown(result) -> str:
    gpu = result["gpu"]
    lines = [f"# The CUDA kernels of issue 15, read without a GPU ({gpu['name']}, {ARCH})", "",
             f"NVRTC (compute_{ARCH[3:]}) → PTX → `ptxas -arch={ARCH} -v`, {result['ptxas']}.  "
             f"Occupancy at {result['rows'][0]['threads_per_block']} threads per block by the CUDA occupancy rules.  "
             f"Trajectory-steps/s if every SM issued one instruction per lane and cycle ({gpu['sms']} SMs × "
             f"{gpu['issue_lanes']} lanes × {gpu['clock_hz'] / 1e9:.2f} GHz; a double operation counts twice, a 64-bit integer division {DIV64_SLOTS} times): "
             "a ceiling where one step is the loop's text, an estimate where the loop has inner loops and branches "
             "(each counted once); read from the code, not measured.", "",
             "| kernel | dtype | registers | stack B | spills B | shared B | occupancy (limit) | PTX instr / step "
             "| f32 / f64 ops a step | ceiling traj-steps/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        loop = r["loop"] or {}
        calls = "".join(f" + {k}× {f}" for f, k in loop.get("calls", {}).items())
        per_step = f"{loop.get('total', 0)}{calls}" + ("" if r.get("exact_per_step") else " (one pass over the text)")
        ops = sum(r["functions"][f].get("f32", 0) * k for f, k in loop.get("calls", {}).items() if f in r["functions"])
        ops64 = sum(r["functions"][f].get("f64", 0) * k for f, k in loop.get("calls", {}).items() if f in r["functions"])
        lines.append(f"| {r['kernel']} | {r['dtype']} | {r['registers']} | {r['cumulative_stack_bytes'] or r['stack_bytes']} "
                     f"| {r['spill_store_bytes'] + r['spill_load_bytes']} | {r['shared_bytes']} "
                     f"| {100 * r['occupancy']:.0f}% ({r['limited_by']}) | {per_step} "
                     f"| {loop.get('f32', 0) + ops} / {loop.get('f64', 0) + ops64} "
                     f"| {r.get('ceiling_traj_steps_per_s', float('nan')):.3g}"
                     + ("" if r.get("exact_per_step") else " (estimate)") + " |")
    lines += ["", "Reading:", *result["reading"], "", "Instruction mix per PTX function (whole text):", "",
              "| kernel | dtype | function | total | f32 (fma) | f64 (fma) | special | int64 div | shared | global | local |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        for f, k in r["functions"].items():
            lines.append(f"| {r['kernel']} | {r['dtype']} | {f[:32]} | {k['total']} | {k.get('f32', 0)} ({k.get('f32 fma', 0)}) "
                         f"| {k.get('f64', 0)} ({k.get('f64 fma', 0)}) | {k.get('special', 0)} | {k.get('int64 division', 0)} "
                         f"| {k.get('shared memory', 0)} "
                         f"| {k.get('global memory', 0)} | {k.get('local memory', 0)} |")
    return "\n".join(lines) + "\n"


def reading(rows, gpu=H100) -> list:
    """What the figures say about issue 15's two targets."""
    out = []
    lorenz = next((r for r in rows if r["kernel"].startswith("Lorenz") and r["dtype"] == "float32"), None)
    if lorenz and "ceiling_traj_steps_per_s" in lorenz:
        c = lorenz["ceiling_traj_steps_per_s"]
        out.append(f"- Lorenz, float32: {lorenz['step_issue_slots']:.0f} issue slots a step give at most {c:.3g} "
                   f"trajectory-steps/s; the 1e11 target needs {100 * 1e11 / c:.0f}% of that issue rate, at "
                   f"{100 * lorenz['occupancy']:.0f}% occupancy ({lorenz['registers']} registers, "
                   f"{lorenz['spill_store_bytes'] + lorenz['spill_load_bytes']} B spilled).")
    neural = next((r for r in rows if r["kernel"].startswith("neural") and r["dtype"] == "float32"), None)
    if neural and "network_fp32_ceiling" in neural:
        kernel = neural["functions"].get("kernel", {})
        out.append(f"- Neural SDE, float32: the network's own instruction mix (its FMAs among shared loads and "
                   f"tanh's ~15 instructions) caps it at {100 * neural['network_fp32_ceiling']:.0f}% of FP32 peak "
                   f"with the rest of a step free; the 30% target needs the step's other work (the (W, H) tree and "
                   f"Philox with the Box–Muller transform in double, as the Numba backend computes them: "
                   f"{kernel.get('f64', 0)} double operations in the kernel's text) within "
                   f"{100 * (neural['network_fp32_ceiling'] / 0.30 - 1):.0f}% of the network's issue slots, "
                   f"at {100 * neural['occupancy']:.0f}% occupancy ({neural['registers']} registers, limit: "
                   f"{neural['limited_by']}; {neural['cumulative_stack_bytes'] or neural['stack_bytes']} B of local "
                   "memory a thread: the tree's node stack).")
        if "ceiling_traj_steps_per_s" in neural:
            rate = neural["ceiling_traj_steps_per_s"]
            flops = neural["network_fp32_ceiling"] * 2 * issue_slots(neural["functions"]["rhs_full"])
            peak = 2 * gpu["fp32_lanes"] * gpu["sms"] * gpu["clock_hz"]
            out.append(f"- One pass over its loop's text with the network ({neural['step_issue_slots']:.0f} issue slots) "
                       f"would give {rate:.3g} trajectory-steps/s, {100 * rate * flops / peak:.0f}% of FP32 peak: an "
                       "estimate (the tree's loops run a data-dependent number of times, its rare branches not at all), "
                       "which says the noise, not the network, decides the target.")
    return out or ["- no kernel had a time loop to read"]


def missing() -> str | None:
    """What this analysis needs and the machine lacks (None: nothing)."""
    if shutil.which("ptxas") is None:
        return "ptxas (the CUDA toolkit's assembler, with nvcc) is not on PATH"
    import importlib.util
    if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.cuda_nvrtc") is None:
        return "NVRTC is not installed (pip install nvidia-cuda-nvrtc-cu12, in the test extras)"
    return None


def run(gpu=H100) -> dict:
    from sdekit.codegen import print_cuda
    rows = [analyse(name, method, make, flops, dtype, gpu) for name, method, make, flops in kernels()
            for dtype in ("float32", "float64")]
    name, method, make, flops = kernels()[1]
    print_cuda.LAUNCH_BOUNDS = (128, 4)        # the device run's A/B: a new model, so the source is printed anew
    try:
        rows.append(analyse(name + ", __launch_bounds__(128, 4)", method, make, flops, "float32", gpu))
    finally:
        print_cuda.LAUNCH_BOUNDS = None
    version = subprocess.run(["ptxas", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return dict(machine=machine(), gpu=gpu, arch=ARCH, ptxas=version, rows=rows, reading=reading(rows, gpu))


def main(quick: bool = False) -> dict | None:
    why = missing()
    if why:
        print(f"cuda_static skipped: {why}")
        return None
    result = run()

    def figure(path):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.2))
        kinds = ("f32", "f64", "shared memory", "global memory", "local memory", "other")
        labels = []
        for i, r in enumerate(result["rows"]):
            per_function = r["functions"]
            bottom = 0
            for j, kind in enumerate(kinds):
                value = sum(f.get(kind, 0) for f in per_function.values())
                ax.barh(i, value, left=bottom, color=f"C{j}", label=kind if i == 0 else None)
                bottom += value
            labels.append(f"{r['kernel'].split(' (')[0]}, {r['dtype']}")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set(xlabel="PTX instructions in the kernel's text (per kind)", title=f"CUDA kernels for {ARCH}, static")
        ax.legend(fontsize=6, ncol=3)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    write("cuda_static", result, markdown(result), figure, quick)
    return result


if __name__ == "__main__":
    import sys
    sys.exit(0 if main("--quick" in sys.argv) is not None else 2)
