"""A solve's saved states on disk, chunk by chunk: ``solve(ens, ..., store=PATH)``.

``PATH/`` holds the states (n, nsave, d), retcodes (n,) and per-trajectory counts (n, 3: ``abi.STATS``, read as
``sol.trajectory_stats``) as zarr arrays (``y.zarr``, ``retcodes.zarr``, ``counts.zarr``, one zarr chunk per solve
chunk) when zarr is installed, else as numpy memmaps (``y.npy``, ``retcodes.npy``, ``counts.npy``;
``store_format="npy"`` asks for these; a store begun before the counts were kept has none), ``t.npy`` and
``manifest.json``: the solve's fingerprint (model, data, method, options, chunking) and, per
finished chunk, a SHA-256 of its states, retcodes and counts, and its summed stats.  A chunk is recorded only
after its data are flushed, and the manifest is replaced atomically, so a solve stopped at any
point leaves only whole, verified chunks; a restarted solve with the same store and arguments
skips exactly those (a chunk whose bytes no longer match its checksum, or no longer decompress,
is computed again; a ``manifest.json`` that no longer parses leaves nothing verifiable, so the whole
solve is computed again, with a warning naming it).
A store made by ``memory_limit`` (a temporary folder) is removed when its Solution is garbage
collected, or at exit.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from sdekit.abi import STATS
from sdekit.kernels.cuda_arrays import host


def fingerprint(ens, method: str, dt, options: dict) -> str:
    """What a store's chunks were computed from (not the chunking: the store keeps its own bounds,
    so a restart on another cluster resumes them): a restart must match it.  Options are hashed by name and value,
    networks by their layout (sizes, activation) and weights — an External by its torch module's parameters, or a
    plain function's name and bytecode (values it closes over are not seen) — and the sdekit version and runtime
    fingerprint (an upgrade may change the Brownian paths)."""
    from sdekit import __version__
    from sdekit.kernels.cache import runtime_fingerprint
    from sdekit.nets import check_weights
    prob, form, h = ens.problem, ens.problem.model.form, hashlib.sha256()
    listed = {k for k, v in options.items() if isinstance(v, (list, tuple, np.ndarray))}
    for part in (__version__, runtime_fingerprint(), type(prob.model).__name__, form.states, form.linear, form.affine,
                 form.nonlinear, form.diffusion, form.noise, prob.tspan, sorted(prob.params), method, dt,
                 sorted((k, repr(v)) for k, v in options.items() if k not in listed),
                 sorted((name, repr(net), net.sizes, getattr(net, "activation", None)) for name, net in form.nets.items()),
                 ens.n, ens.seed, ens.first):
        h.update(repr(part).encode())
    arrays = [np.ascontiguousarray(host(ens.y0), dtype=np.float64), prob.y0]   # a float32 y0 on the GPU: its values
    arrays += [np.asarray(host(v)) for _, v in sorted(ens.params().items())]
    for k in sorted(listed):
        h.update(f"option {k}".encode())
        arrays.append(np.asarray(options[k], dtype=float))
    if form.linear_numeric is not None:
        arrays.append(form.linear_numeric)
    for name in sorted(prob.nets):
        weights = check_weights(form.nets[name], prob.nets[name], np.float64)
        if callable(weights):        # an External network
            h.update(_external_identity(name, weights))
            continue
        arrays += [x for pair in weights for x in pair]
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _external_identity(name: str, fn) -> bytes:
    """An External network's callable as the store fingerprint sees it: a torch module's parameters and buffers
    (a retrained network is another), else its qualified name and, for a Python function, its bytecode."""
    out = hashlib.sha256(f"external {name} {getattr(fn, '__qualname__', type(fn).__name__)}".encode())
    if hasattr(fn, "state_dict"):
        for key, value in fn.state_dict().items():
            out.update(key.encode())
            out.update(np.ascontiguousarray(host(value)).tobytes())
    code = getattr(fn, "__code__", None)
    if code is not None:
        out.update(code.co_code + repr(code.co_consts).encode())
    return out.digest()


FORMATS = ("auto", "zarr", "npy")


def _zarr():
    try:
        import zarr
    except ImportError:
        return None
    return zarr


class _Npy:
    """The states and retcodes as numpy memmaps (``sol.y`` is an ``np.memmap``)."""

    name = "npy"

    def __init__(self, path):
        self.path = path

    def exists(self):
        return (self.path / "y.npy").exists()

    def open(self):
        return np.load(self.path / "y.npy", mmap_mode="r+"), np.load(self.path / "retcodes.npy", mmap_mode="r+")

    def create(self, shape, dtype, rows):
        return (np.lib.format.open_memmap(self.path / "y.npy", mode="w+", dtype=dtype, shape=shape),
                np.lib.format.open_memmap(self.path / "retcodes.npy", mode="w+", dtype=np.int8, shape=shape[:1]))

    def flush(self, *arrays):
        """Write the memmaps' pages (None: an array the store does not keep)."""
        for a in arrays:
            if a is not None:
                a.flush()

    def reader(self):
        return np.load(self.path / "y.npy", mmap_mode="r")

    def open_counts(self):
        """The per-trajectory counts (n, 3), or None in a store begun before they were kept."""
        path = self.path / "counts.npy"
        return np.load(path, mmap_mode="r+") if path.exists() else None

    def create_counts(self, n: int, rows: int):
        return np.lib.format.open_memmap(self.path / "counts.npy", mode="w+", dtype=np.int64, shape=(n, len(STATS)))


class _Zarr(_Npy):
    """The states and retcodes as zarr arrays, one zarr chunk per solve chunk, so a chunk's write
    touches its own files only (``sol.y`` is a read-only ``zarr.Array``; ``sol.y[...]`` reads)."""

    name = "zarr"

    def exists(self):
        return (self.path / "y.zarr").exists()

    def open(self):
        zarr = _zarr()
        return zarr.open_array(self.path / "y.zarr", mode="r+"), zarr.open_array(self.path / "retcodes.zarr", mode="r+")

    def create(self, shape, dtype, rows):
        zarr = _zarr()
        return (zarr.open_array(self.path / "y.zarr", mode="w", shape=shape, chunks=(rows,) + shape[1:], dtype=dtype),
                zarr.open_array(self.path / "retcodes.zarr", mode="w", shape=shape[:1], chunks=(rows,), dtype=np.int8))

    def flush(self, *arrays):
        """zarr writes a chunk's files when it is assigned."""

    def reader(self):
        return _zarr().open_array(self.path / "y.zarr", mode="r")

    def open_counts(self):
        path = self.path / "counts.zarr"
        return _zarr().open_array(path, mode="r+") if path.exists() else None

    def create_counts(self, n: int, rows: int):
        return _zarr().open_array(self.path / "counts.zarr", mode="w", shape=(n, len(STATS)), chunks=(rows, len(STATS)),
                                  dtype=np.int64)


def _layout(path: Path, kept, fmt: str):
    if fmt not in FORMATS:
        raise ValueError(f"store_format must be one of {', '.join(map(repr, FORMATS))}, got {fmt!r}")
    if kept is None and (path / "y.npy").exists():    # a store begun before zarr stores existed
        kept = "npy"
    if kept is not None:                       # a started store keeps its format
        fmt = kept
    if fmt == "zarr" and _zarr() is None:
        raise ValueError(f"store {path} is in zarr format, and zarr is not installed (pip install zarr)"
                         if kept else "store_format='zarr' needs zarr (pip install zarr); 'npy' needs nothing")
    if fmt == "auto":
        fmt = "zarr" if _zarr() is not None else "npy"
    return (_Zarr if fmt == "zarr" else _Npy)(path)


#: what reading a garbled or truncated zarr chunk file raises (found by flipping bytes in, and
#: truncating, chunk files of zarr 3 / numcodecs 0.16): numcodecs' Zstd raises RuntimeError
#: ("Zstd decompression error"), and a frame that decompresses to the wrong number of bytes fails
#: zarr's reshape or view with ValueError.
UNREADABLE = (RuntimeError, ValueError)


def _read_manifest(path: Path):
    """The manifest of a started store, or None: none yet, or damaged (truncated, garbled, not a
    manifest), which leaves no chunk verifiable, so the solve starts again (with a warning)."""
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())       # (JSONDecodeError, UnicodeDecodeError: ValueErrors)
        if not (isinstance(manifest, dict) and isinstance(manifest.get("fingerprint"), str)
                and isinstance(manifest.get("chunks"), dict)):
            raise ValueError("not a store manifest")
    except ValueError as e:
        import warnings
        warnings.warn(f"{path} is damaged ({e}): no stored chunk can be verified, so every chunk is computed "
                      "again", stacklevel=5)
        return None
    return manifest


class ChunkStore:
    """The on-disk result of one chunked solve (module docstring)."""

    def __init__(self, path, n: int, print_key: str, bounds, fmt: str = "auto", default_bounds=None):
        """Open (or start) the store of a solve; ``bounds``: the chunking asked for, or None to
        resume the store's own (a started store keeps its chunking and format; another chunking is
        refused) or, in a new store, to take ``default_bounds`` (the automatic chunking); ``fmt``: one of
        FORMATS."""
        self.path, self.n, self.key = Path(path), n, print_key
        self.path.mkdir(parents=True, exist_ok=True)
        started = _read_manifest(self.path / "manifest.json")
        self.manifest = started if started is not None else {"fingerprint": print_key, "chunks": {}}
        if self.manifest["fingerprint"] != print_key:
            raise ValueError(f"store {self.path} holds a different solve (another model, data, method or options); "
                             "give a new store path, or delete it to start again")
        kept = self.manifest.get("bounds")
        if kept is not None and bounds is not None and [list(b) for b in bounds] != kept:
            raise ValueError(f"store {self.path} is chunked in {len(kept)} chunks of {kept[0][1] - kept[0][0]}; resume it "
                             "with that chunk_size (or none), or give a new store path")
        self.bounds = [tuple(b) for b in (kept if kept is not None else bounds if bounds is not None else
                                          default_bounds)]
        self.manifest["bounds"] = [list(b) for b in self.bounds]
        self.layout = _layout(self.path, self.manifest.get("format"), fmt)
        self.manifest["format"] = self.layout.name
        self.y = self.codes = self.counts = None
        if started is not None and self.layout.exists():   # no manifest: nothing there is ours, write afresh
            self.y, self.codes = self.layout.open()
            self.counts = self.layout.open_counts()

    def _checksum(self, a: int, b: int) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.y[a:b]).tobytes())
        h.update(np.ascontiguousarray(self.codes[a:b]).tobytes())     # (zarr: a missing chunk reads as zeros)
        if self.counts is not None:                                   # (a store begun before they were kept: none)
            h.update(np.ascontiguousarray(self.counts[a:b]).tobytes())
        return h.hexdigest()

    def done(self) -> set:
        """The (a, b) chunks stored whole: recorded, and their bytes still match their checksum."""
        if self.y is None:
            return set()
        out = set()
        for name, entry in self.manifest["chunks"].items():
            a, b = (int(x) for x in name.split("-"))
            try:
                ok = self._checksum(a, b) == entry["sha256"]
            except UNREADABLE:           # a zarr chunk file garbled or truncated: damaged, computed again
                ok = False
            if ok:
                out.add((a, b))
        return out

    def stats(self, bounds) -> dict:
        total = {}
        for a, b in bounds:
            for k, v in self.manifest["chunks"][f"{a}-{b}"]["stats"].items():
                total[k] = total.get(k, 0) + v
        return total

    def write(self, a: int, b: int, t, y, codes, stats: dict, counts: dict | None = None):
        """Chunk a..b-1's states, retcodes and per-trajectory ``counts`` ({name: (b − a,)} of ``abi.STATS``), then
        its manifest entry (atomically)."""
        if self.y is None:
            rows = self.bounds[0][1] - self.bounds[0][0]
            self.y, self.codes = self.layout.create((self.n,) + y.shape[1:], y.dtype, rows)
            self.counts = self.layout.create_counts(self.n, rows)
            np.save(self.path / "t.npy", np.asarray(t))
        self.y[a:b] = y
        self.codes[a:b] = codes
        if self.counts is not None and counts is not None:
            self.counts[a:b] = np.stack([np.asarray(counts[k], dtype=np.int64) for k in STATS], axis=1)
        self.layout.flush(self.y, self.codes, self.counts)
        self.manifest["chunks"][f"{a}-{b}"] = {"sha256": self._checksum(a, b), "stats": {k: int(v) for k, v in stats.items()},
                                               "counts": self.counts is not None and counts is not None}
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.manifest, fh)
        os.replace(tmp, self.path / "manifest.json")

    def arrays(self):
        """(t, y read-only on disk (memmap or zarr array), retcodes in memory, per-trajectory counts
        {name: (n,)} in memory, or None unless every chunk recorded them)."""
        whole = self.counts is not None and all(e.get("counts") for e in self.manifest["chunks"].values())
        counts = dict(zip(STATS, np.asarray(self.counts[:], dtype=np.int64).T)) if whole else None
        return np.load(self.path / "t.npy"), self.layout.reader(), np.asarray(self.codes[:]), counts
