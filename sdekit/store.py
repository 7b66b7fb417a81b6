"""A solve's saved states on disk, chunk by chunk: ``solve(ens, ..., store=PATH)``.

``PATH/`` holds ``y.npy`` (a numpy memmap, (n, nsave, d)), ``retcodes.npy``, ``t.npy`` and
``manifest.json``: the solve's fingerprint (model, data, method, options, chunking) and, per
finished chunk, a SHA-256 of its states and retcodes and its stats.  A chunk is recorded only
after its data are flushed, and the manifest is replaced atomically, so a solve stopped at any
point leaves only whole, verified chunks; a restarted solve with the same store and arguments
skips exactly those (a chunk whose bytes no longer match its checksum is computed again).
(zarr would add compression and cloud storage; a memmap needs nothing beyond numpy.)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def fingerprint(ens, method: str, dt, options: dict) -> str:
    """What a store's chunks were computed from (not the chunking: the store keeps its own bounds,
    so a restart on another cluster resumes them): a restart must match it."""
    from sdekit.nets import check_weights
    prob, form, h = ens.problem, ens.problem.model.form, hashlib.sha256()
    for part in (type(prob.model).__name__, form.states, form.linear, form.affine, form.nonlinear, form.diffusion,
                 form.noise, prob.tspan, sorted(prob.params), method, dt,
                 sorted((k, repr(v)) for k, v in options.items() if not isinstance(v, (list, tuple, np.ndarray))),
                 ens.n, ens.seed, ens.first):
        h.update(repr(part).encode())
    arrays = [np.ascontiguousarray(ens.y0), prob.y0] + [np.asarray(v) for _, v in sorted(ens.params().items())]
    arrays += [np.asarray(v, dtype=float) for _, v in sorted(options.items()) if isinstance(v, (list, tuple, np.ndarray))]
    if form.linear_numeric is not None:
        arrays.append(form.linear_numeric)
    for name in sorted(prob.nets):
        arrays += [x for pair in check_weights(form.nets[name], prob.nets[name], np.float64) for x in pair]
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class ChunkStore:
    """The on-disk result of one chunked solve (module docstring)."""

    def __init__(self, path, n: int, print_key: str, bounds):
        """Open (or start) the store of a solve; ``bounds``: the chunking asked for, or None to
        resume the store's own (a started store keeps its chunking; another one is refused)."""
        self.path, self.n, self.key = Path(path), n, print_key
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = self.path / "manifest.json"
        self.manifest = json.loads(manifest.read_text()) if manifest.exists() else {"fingerprint": print_key, "chunks": {}}
        if self.manifest["fingerprint"] != print_key:
            raise ValueError(f"store {self.path} holds a different solve (another model, data, method or options); "
                             "give a new store path, or delete it to start again")
        kept = self.manifest.get("bounds")
        if kept is not None and bounds is not None and [list(b) for b in bounds] != kept:
            raise ValueError(f"store {self.path} is chunked in {len(kept)} chunks of {kept[0][1] - kept[0][0]}; resume it "
                             "with that chunk_size (or none), or give a new store path")
        self.bounds = [tuple(b) for b in kept] if kept is not None else list(bounds)
        self.manifest["bounds"] = [list(b) for b in self.bounds]
        self.y = self.codes = None
        if (self.path / "y.npy").exists():
            self.y = np.load(self.path / "y.npy", mmap_mode="r+")
            self.codes = np.load(self.path / "retcodes.npy", mmap_mode="r+")

    def _checksum(self, a: int, b: int) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.y[a:b]).tobytes())
        h.update(np.ascontiguousarray(self.codes[a:b]).tobytes())
        return h.hexdigest()

    def done(self) -> set:
        """The (a, b) chunks stored whole: recorded, and their bytes still match their checksum."""
        if self.y is None:
            return set()
        out = set()
        for name, entry in self.manifest["chunks"].items():
            a, b = (int(x) for x in name.split("-"))
            if self._checksum(a, b) == entry["sha256"]:
                out.add((a, b))
        return out

    def stats(self, bounds) -> dict:
        total = {}
        for a, b in bounds:
            for k, v in self.manifest["chunks"][f"{a}-{b}"]["stats"].items():
                total[k] = total.get(k, 0) + v
        return total

    def write(self, a: int, b: int, t, y, codes, stats: dict):
        """Chunk a..b-1's states, then its manifest entry (atomically)."""
        if self.y is None:
            self.y = np.lib.format.open_memmap(self.path / "y.npy", mode="w+", dtype=y.dtype, shape=(self.n,) + y.shape[1:])
            self.codes = np.lib.format.open_memmap(self.path / "retcodes.npy", mode="w+", dtype=np.int8, shape=(self.n,))
            np.save(self.path / "t.npy", np.asarray(t))
        self.y[a:b] = y
        self.codes[a:b] = codes
        self.y.flush()
        self.codes.flush()
        self.manifest["chunks"][f"{a}-{b}"] = {"sha256": self._checksum(a, b), "stats": {k: int(v) for k, v in stats.items()}}
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.manifest, fh)
        os.replace(tmp, self.path / "manifest.json")

    def arrays(self):
        """(t, y as a read-only memmap, retcodes)."""
        return np.load(self.path / "t.npy"), np.load(self.path / "y.npy", mmap_mode="r"), np.asarray(self.codes)
