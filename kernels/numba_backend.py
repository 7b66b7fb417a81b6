"""Launch a generated fused Numba kernel (``sdekit.codegen.emit_numba``) over an ensemble."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed

import numba

from .arguments import model_arguments, run_adaptive, run_fixed, step_classes
from .cache import loaded_from_damaged_cache, purge_compiled
from .numba_runtime import kernel_opt_level


def launch(module, n: int, *args, progress: bool = False):
    """Run ``module.kernel(blk0, blk1, *args)`` over all ceil(n / BLOCK) blocks of lanes, on
    ``numba.get_num_threads()`` threads.  The kernel releases the GIL and blocks are independent,
    so the result does not depend on the split; each thread takes about four ranges, so uneven
    (adaptive) blocks balance.  A first call compiles the kernel on this thread alone.
    ``progress``: a tqdm bar of the trajectories whose blocks are done (nothing when off)."""
    kernel = module.kernel
    nblocks = -(-n // module.BLOCK)
    nthreads = max(1, min(numba.get_num_threads(), nblocks))
    per = max(1, nblocks // (4 * nthreads)) if nthreads > 1 else max(1, nblocks // 8)
    ranges = [(a, min(a + per, nblocks)) for a in range(0, nblocks, per)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc="sdekit", unit="traj")

    def done(a, b):
        if bar is not None:
            bar.update(min(b * module.BLOCK, n) - a * module.BLOCK)

    try:
        if not kernel.signatures:
            first_call(module, kernel, ranges[0], args)
            done(*ranges.pop(0))
        if nthreads == 1:
            for a, b in ranges:
                kernel(a, b, *args)
                done(a, b)
            return
        with ThreadPoolExecutor(nthreads, thread_name_prefix="sdekit") as pool:
            jobs = {pool.submit(kernel, a, b, *args): (a, b) for a, b in ranges}
            for job in as_completed(jobs):
                job.result()
                done(*jobs[job])
    finally:
        if bar is not None:
            bar.close()


def first_call(module, kernel, blocks, args):
    """The compiling (or cache-loading) first call, alone; a kernel whose on-disk compiled files (or its lane
    functions', ``module._lanes``) do not load (truncated, garbled) has them removed and is compiled again, with a
    warning."""
    try:
        with kernel_opt_level():
            kernel(*blocks, *args)
    except Exception as e:
        if not loaded_from_damaged_cache(e):
            raise
        import warnings
        files = [m.__file__ for m in (module, getattr(module, "_lanes", None)) if m is not None]
        for path in files:      # which one is damaged is not known: both are compiled again
            purge_compiled(path)
        warnings.warn(f"the compiled kernel cached beside {' and '.join(files)} did not load ({type(e).__name__}: "
                      f"{e}); compiling it again", RuntimeWarning, stacklevel=4)
        with kernel_opt_level():
            kernel(*blocks, *args)


def integrate(module, names, inp):
    """Run the fixed-step fused kernel over ``inp.grid``."""
    extra = model_arguments(names, inp, step_classes(inp.grid)[0])
    return run_fixed(inp, lambda fixed: launch(module, inp.y0.shape[1], *fixed, *extra, progress=inp.progress))


def integrate_adaptive(module, names, inp, record_capacity: int = 1024):
    """Run the adaptive fused kernel (each lane its own steps)."""
    extra = model_arguments(names, inp)
    return run_adaptive(inp, lambda fixed: launch(module, inp.y0.shape[1], *fixed, *extra, progress=inp.progress),
                        record_capacity)
