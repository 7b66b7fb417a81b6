"""Scale-out on dask.distributed: ``solve(ens, ..., distributed=client)``.

The ensemble is scattered to every worker once (``broadcast=True``: the model, weights and
initial values travel once, and each worker keeps one model object, so its kernel is generated
and loaded once per worker, from that machine's on-disk cache when it is there).  Each chunk
``ens.chunk(a, b)`` is a task, submitted with ``retries``; a worker that dies has its chunks
recomputed elsewhere.  Noise is addressed by (seed, trajectory, time), so the gathered result is
bit for bit the single-process solve, for any chunk size and worker count.  With ``reduction=``
the workers return per-chunk statistics instead of states, combined as chunks arrive
(``as_completed``), so an ensemble larger than memory never has to exist in one process.
"""
from __future__ import annotations

import shutil
import uuid
import weakref
from dataclasses import dataclass, field

import numpy as np

from sdekit.abi import RETCODES, SUCCESS
from sdekit.solution import Solution

#: trajectories per chunk when the user gives no chunk_size: about four chunks per worker thread
#: (so a slow or lost chunk costs little), at least this many (per-task overhead ~ms)
MIN_CHUNK = 1024


@dataclass
class Moments:
    """Per-chunk statistics of the saved states, combinable across chunks (Chan, Golub & LeVeque
    1979, the pairwise update of count, mean and M2 = Σ (x − mean)²): ``reduction="moments"``."""

    count: int
    mean: np.ndarray                  # (nsave, d)
    m2: np.ndarray                    # (nsave, d)

    @classmethod
    def of(cls, y: np.ndarray) -> "Moments":
        """Of one chunk's states ``y`` (n, nsave, d); trajectories with non-finite states excluded (none left: count
        0, mean NaN)."""
        ok = np.all(np.isfinite(y.reshape(y.shape[0], -1)), axis=1)
        x = y[ok]
        if not x.shape[0]:
            return cls(0, np.full(y.shape[1:], np.nan), np.zeros(y.shape[1:]))
        mean = x.mean(axis=0)
        return cls(int(x.shape[0]), mean, ((x - mean) ** 2).sum(axis=0))

    def combine(self, other: "Moments") -> "Moments":
        if not other.count or not self.count:
            return self if not other.count else other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        return Moments(n, mean, self.m2 + other.m2 + delta**2 * (self.count * other.count / n))

    @property
    def variance(self) -> np.ndarray:
        """Unbiased sample variance (n − 1); NaN for fewer than two trajectories."""
        return self.m2 / (self.count - 1) if self.count > 1 else np.full(self.m2.shape, np.nan)


@dataclass
class QuantileSketch:
    """A mergeable summary of the saved states for quantiles over trajectories
    (``reduction="quantiles"``): per (time, component), ``size`` weighted points at evenly spaced
    ranks of the values seen.  A chunk's sketch is exact up to its rank spacing; merging sorts the
    points and keeps ``size`` of them at evenly spaced cumulative weight, so a quantile's rank error
    stays within about (number of merges + 1) / size of n.  Non-finite trajectories are left out."""

    values: np.ndarray                # (size, nsave, d), sorted along axis 0
    weights: np.ndarray               # (size,) trajectories each point stands for
    size: int = 1024

    @classmethod
    def of(cls, y: np.ndarray, size: int = 1024) -> "QuantileSketch":
        ok = np.all(np.isfinite(y.reshape(y.shape[0], -1)), axis=1)
        x = np.sort(y[ok], axis=0)
        if x.shape[0] <= size:
            return cls(x, np.ones(x.shape[0]), size)
        idx = ((np.arange(size) + 0.5) * x.shape[0] / size).astype(int)
        return cls(x[idx], np.full(size, x.shape[0] / size), size)

    def combine(self, other: "QuantileSketch") -> "QuantileSketch":
        if not len(other.weights) or not len(self.weights):       # a chunk with no finite trajectory
            return self if not len(other.weights) else other
        values = np.concatenate([self.values, other.values])
        weights = np.concatenate([self.weights, other.weights])
        order = np.argsort(values, axis=0, kind="stable")      # per (time, component): its own order
        v = np.take_along_axis(values, order, axis=0)
        if v.shape[0] <= self.size and np.all(weights == weights[0]):     # still exact: every value, one weight
            return QuantileSketch(v, weights, self.size)
        cum = np.cumsum(weights[order], axis=0)                            # per column: its own order's weights
        targets = (np.arange(self.size) + 0.5) / self.size * weights.sum()
        pick = np.empty((self.size,) + v.shape[1:], dtype=np.int64)
        for i in range(v.shape[1]):
            for j in range(v.shape[2]):
                pick[:, i, j] = np.searchsorted(cum[:, i, j], targets)
        pick = np.minimum(pick, v.shape[0] - 1)
        return QuantileSketch(np.take_along_axis(v, pick, axis=0), np.full(self.size, weights.sum() / self.size),
                              self.size)

    @property
    def count(self) -> float:
        return float(self.weights.sum())

    def quantile(self, q) -> np.ndarray:
        """The q-quantiles (q in [0, 1], scalar or array) of the states: shape q.shape + (nsave, d); NaN when no
        trajectory stayed finite."""
        q = np.asarray(q, dtype=float)
        if not len(self.weights):
            return np.full(q.shape + self.values.shape[1:], np.nan)
        cum = (np.cumsum(self.weights) - 0.5 * self.weights) / self.weights.sum()
        flat = self.values.reshape(self.values.shape[0], -1)
        out = np.stack([np.interp(q, cum, flat[:, k]) for k in range(flat.shape[1])], axis=-1)
        return out.reshape(q.shape + self.values.shape[1:])


@dataclass
class Reduction:
    """A user reduction: ``chunk(sol, (a, b)) -> value`` on each worker (``sol``: the solution of
    trajectories a..b-1), ``combine(x, y) -> value`` as chunks arrive (associative and commutative:
    the arrival order varies), and ``finish(value)`` once at the end."""

    chunk: object
    combine: object
    finish: object = None


@dataclass
class Reduced:
    """What a distributed solve with ``reduction=`` returns: the combined ``value`` (for
    "moments": a :class:`Moments` — ``.mean``, ``.variance``; for "quantiles": a
    :class:`QuantileSketch` — ``.quantile(q)``), the saved times, the retcode counts and the summed stats."""

    t: np.ndarray
    value: object
    n: int
    retcodes: dict
    stats: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return set(self.retcodes) <= {RETCODES[SUCCESS]}


def _reduction(reduction) -> Reduction:
    if isinstance(reduction, Reduction):
        return reduction
    if isinstance(reduction, str) and reduction in ("moments", "mean", "variance"):
        return Reduction(lambda sol, bounds: Moments.of(sol.y), Moments.combine)
    if isinstance(reduction, str) and reduction == "quantiles":
        return Reduction(lambda sol, bounds: QuantileSketch.of(sol.y), QuantileSketch.combine)
    raise ValueError(f"reduction must be 'moments' (mean and variance of the saved states), 'quantiles' or a "
                     f"sdekit.distributed.Reduction(chunk, combine[, finish]), got {reduction!r}")


def _solve_chunk(ens, a: int, b: int, method, dt, options, reduction):
    """On a worker: solve trajectories a..b-1 of ``ens``; return (a, what the gather needs)."""
    from sdekit.solve import solve
    sol = solve(ens.chunk(a, b), method, dt, **options)
    codes = np.array([RETCODES.index(c) for c in sol.retcodes], dtype=np.int8)
    payload = sol.y if reduction is None else reduction.chunk(sol, (a, b))
    return a, sol.t, payload, codes, sol.stats, (sol.trajectory_stats if reduction is None else None)


def _client(distributed):
    """The dask Client: the one given, or (``True``) one on a new LocalCluster."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError("distributed= needs dask.distributed: pip install 'sdekit[dask]'") from None
    if distributed is True:
        return Client(), True
    if not isinstance(distributed, Client):
        raise ValueError(f"distributed must be a dask.distributed.Client or True (a LocalCluster), got {distributed!r}")
    return distributed, False


def chunk_bounds(n: int, chunk_size: int | None, workers: int) -> list:
    """[(a, b), ...] covering 0..n-1: chunks of ``chunk_size`` (the last shorter), or automatic."""
    if chunk_size is None:
        chunk_size = max(MIN_CHUNK, -(-n // (4 * max(workers, 1))))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    return [(a, min(a + int(chunk_size), n)) for a in range(0, n, int(chunk_size))]


def check_options(retries, store_format):
    """ValueError naming a bad ``retries`` or ``store_format``: solve checks them whether or not it
    chunks (a solve that does not chunk uses neither)."""
    if retries is None or isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    from sdekit.store import FORMATS
    if not isinstance(store_format, str) or store_format not in FORMATS:
        raise ValueError(f"store_format must be one of {', '.join(map(repr, FORMATS))}, got {store_format!r}")


def _check_store(store, memory_limit):
    """ValueError naming a ``store`` that is not a folder path (empty, another type, an existing file) or a
    ``memory_limit`` that is not a number of bytes > 0 (checked whatever else is given)."""
    import os
    if store is not None:
        if not isinstance(store, (str, os.PathLike)) or not os.fspath(store):
            raise ValueError(f"store must be a folder path (str or pathlib.Path), got {store!r}")
        if os.path.exists(store) and not os.path.isdir(store):
            raise ValueError(f"store {os.fspath(store)!r} is a file: give a folder path (new, or a store to resume)")
    if memory_limit is not None and (isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, float, np.integer))
                                     or not memory_limit > 0):
        raise ValueError(f"memory_limit must be a number of bytes > 0, got {memory_limit!r}")


def solve_chunked(ens, method, dt=None, *, distributed=None, chunk_size=None, reduction=None, retries: int = 2,
                  store=None, store_format: str = "auto", memory_limit=None, progress: bool = False, **options):
    """``sdekit.solve`` of an Ensemble chunk by chunk (module docstring): on a dask cluster
    (``distributed``) or here, one chunk after another; the same arguments, plus ``chunk_size``
    (trajectories per chunk), ``reduction``, ``retries`` (per chunk, dask), ``store`` (a folder
    the states stream to, resumable: :mod:`sdekit.store`; ``store_format``: "auto" (zarr when
    installed), "zarr" or "npy") and ``memory_limit`` (bytes of states above which they stream to a
    temporary store instead of memory, removed with the Solution's states)."""
    from sdekit.problem import Ensemble
    from sdekit.solve import plan
    if not isinstance(ens, Ensemble):
        raise ValueError(f"chunked and distributed solves take an Ensemble, got {type(ens).__name__}")
    check_options(retries, store_format)
    _check_store(store, memory_limit)
    local = plan(ens.chunk(0, 1), method, dt, **options)     # validate (and compile here) before anything runs
    red = None if reduction is None else _reduction(reduction)
    if red is not None and store is not None:
        raise ValueError("give either reduction= (statistics, no states kept) or store= (the states on disk), not both")
    client, own = _client(distributed) if distributed not in (None, False) else (None, False)
    try:
        threads = sum(client.nthreads().values()) if client is not None else 1
        bounds = chunk_bounds(ens.n, chunk_size, threads)
        temporary = None
        try:
            if red is None and store is None and memory_limit is not None:
                store = temporary = _spill(ens, local, memory_limit)
            elif red is None and store is None:         # gathered in memory: the whole solve's states, not a chunk's
                from sdekit.solve import _check_memory
                _check_memory(_saved_bytes(ens, local), _saved_times(local), ens.n, stacklevel=5)
            sink = None
            if store is not None:          # a started store keeps its chunking, whatever the cluster now
                from sdekit.store import ChunkStore, fingerprint
                sink = ChunkStore(store, ens.n, fingerprint(ens, local.method, dt, options),
                                  None if chunk_size is None else bounds, store_format, default_bounds=bounds)
                bounds = sink.bounds
            todo = [ab for ab in bounds if sink is None or ab not in sink.done()]
            results = (_on_dask(client, ens, todo, method, dt, options, red, retries) if client is not None else
                       ((ab, _try(_solve_chunk, ens, *ab, method, dt, options, red)) for ab in todo))
            try:
                sol = _gather(results, bounds, len(todo), ens.n, red, sink, local.method, local.backend, progress)
                if temporary is not None:   # the folder goes when the states do (a view keeps them), or at exit
                    weakref.finalize(sol.y, shutil.rmtree, temporary, ignore_errors=True)
                    temporary = None
                return sol
            finally:              # also on Ctrl-C in the gather: close the stream now, which cancels its futures
                results.close()
        finally:
            if temporary is not None:      # stopped before a Solution held it: nothing to resume there
                shutil.rmtree(temporary, ignore_errors=True)
    finally:
        if own:
            client.close()


def _saved_times(local) -> int:
    """How many times each trajectory saves (``local``: the planned solve of one trajectory)."""
    inp = local.inputs
    return len(inp.save_steps) if inp.save_steps is not None else len(inp.opts.save_times)


def _saved_bytes(ens, local) -> int:
    """Bytes of the whole ensemble's saved states."""
    inp = local.inputs
    return ens.n * _saved_times(local) * inp.y0.shape[0] * inp.y0.dtype.itemsize


def _spill(ens, local, memory_limit):
    """A temporary store when the states would take more than ``memory_limit`` bytes (else None; the limit checked
    by :func:`_check_store`)."""
    nbytes = _saved_bytes(ens, local)
    if nbytes <= memory_limit:
        return None
    import tempfile
    import warnings
    path = tempfile.mkdtemp(prefix="sdekit-store-")
    warnings.warn(f"the saved states take {nbytes / 2**30:.2f} GiB, more than memory_limit: they stream to {path} "
                  "(sol.y reads from there, and the folder is removed with it; pass store= to keep them)", stacklevel=4)
    return path


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception as e:
        return e


def _on_dask(client, ens, todo, method, dt, options, red, retries):
    """((a, b), result or exception) as the cluster finishes chunks; cancels the rest on the way out."""
    from dask.distributed import as_completed
    shared = client.scatter(ens, broadcast=True, hash=False)   # a key of its own: never one being released
    solve_id = uuid.uuid4().hex[:12]
    futures = {client.submit(_solve_chunk, shared, a, b, method, dt, options, red, retries=retries, pure=False,
                             key=f"sdekit-chunk-{a}-{b}-{solve_id}"): (a, b) for a, b in todo}
    try:
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as e:
                yield futures[future], e
    finally:                            # done, a failed chunk, or Ctrl-C: nothing left running for this solve
        client.cancel(list(futures))


def _gather(results, bounds, ntodo, n, red, sink, method, backend, progress):
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=ntodo, desc="sdekit chunks", unit="chunk")
    states, codes, stats, times, value = {}, np.zeros(n, np.int8), {}, None, None
    per_trajectory = {}                          # name → (n,) counts, filled chunk by chunk (in-memory solves)
    try:
        for (a, b), result in results:
            if isinstance(result, Exception):
                raise RuntimeError(f"the chunk of trajectories {a}..{b - 1} failed: {type(result).__name__}: "
                                   f"{result}") from result
            _, t, payload, chunk_codes, chunk_stats, chunk_counts = result
            times = t
            if bar is not None:
                bar.update(1)
            if sink is not None:
                sink.write(a, b, t, payload, chunk_codes, chunk_stats, chunk_counts)
                continue
            codes[a:b] = chunk_codes
            for k, v in chunk_stats.items():     # counts add up; a description (stats["driver"]) is kept
                stats[k] = stats.get(k, 0) + v if isinstance(v, (int, np.integer)) else v
            if red is None:
                states[a] = payload
                for k, v in (chunk_counts or {}).items():
                    per_trajectory.setdefault(k, np.zeros(n, np.int64))[a:b] = v
            else:
                value = payload if value is None else red.combine(value, payload)
    finally:
        if bar is not None:
            bar.close()
    if sink is not None:
        times, y, codes, counts = sink.arrays()
        return Solution.from_codes(times, y, codes, True, stats=sink.stats(bounds), method=method, backend=backend,
                                   trajectory_stats=counts)
    if red is not None:
        found, counts = np.unique(codes, return_counts=True)    # on the int8 codes: no n names, no n-long intp copy
        value = red.finish(value) if red.finish is not None else value
        return Reduced(times, value, n, {RETCODES[int(i)]: int(c) for i, c in zip(found, counts)}, stats)
    y = np.concatenate([states[a] for a, _ in bounds], axis=0)
    return Solution.from_codes(times, y, codes, True, stats=stats, method=method, backend=backend,
                               trajectory_stats=per_trajectory or None)
