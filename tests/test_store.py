"""Chunked solves here, streamed to disk and resumed (issue 18 items 2 and 5): chunk by chunk is
the whole solve bit for bit; ``store=`` streams the states to zarr or a memmap with a checksum per
chunk, and a restarted solve recomputes only the chunks that are missing or damaged;
``memory_limit`` spills to a temporary store, removed with the states; a reduction over 10^6
trajectories never holds their states."""
import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import sdekit as sk
import sdekit.distributed as dist
from sdekit.demo import demo_problem

ENS = demo_problem(700, seed=5)
TS = [0.0, 0.5, 1.0]


@pytest.mark.parametrize("method, options", [("SETD1", {"dt": 0.01}), ("SRA1", {"rtol": 1e-2, "atol": 1e-2})],
                         ids=["fixed", "adaptive"])
def test_chunk_by_chunk_is_the_whole_solve(method, options):
    ens = ENS if method == "SETD1" else ENS.chunk(0, 300)       # adaptive: fewer lanes, as many chunks
    here = sk.solve(ens, method, saveat=TS, **options)
    chunked = sk.solve(ens, method, saveat=TS, chunk_size=128 if method == "SRA1" else 256, **options)
    np.testing.assert_array_equal(chunked.y, here.y)
    assert chunked.stats == here.stats and list(chunked.retcodes) == list(here.retcodes)


class Stop(BaseException):
    """Stands for Ctrl-C (a BaseException, as KeyboardInterrupt is, which pytest keeps for itself)."""


def _counting(monkeypatch, fail_at=None):
    calls = []
    real = dist._solve_chunk

    def solve_chunk(ens, a, b, *rest):
        calls.append((a, b))
        if fail_at is not None and len(calls) == fail_at:
            raise Stop                        # the user stops the solve in the middle
        return real(ens, a, b, *rest)
    monkeypatch.setattr(dist, "_solve_chunk", solve_chunk)
    return calls


FORMATS = ["zarr", "npy"]


def _on_disk(sol, fmt):
    import zarr
    return isinstance(sol.y, np.memmap) if fmt == "npy" else isinstance(sol.y, zarr.Array)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_stopped_solve_resumes_from_its_store_computing_nothing_twice(tmp_path, monkeypatch, fmt):
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS)
    calls = _counting(monkeypatch, fail_at=3)
    with pytest.raises(Stop):
        sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=100, store=tmp_path / "run", store_format=fmt)
    assert len(calls) == 3                                  # chunks 0 and 1 were stored whole
    monkeypatch.undo()
    calls = _counting(monkeypatch)
    sol = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=100, store=tmp_path / "run")   # its own format
    assert sorted(calls) == [(a, a + 100) for a in range(200, 700, 100)]
    assert _on_disk(sol, fmt) and (tmp_path / "run" / f"y.{fmt}").exists()
    np.testing.assert_array_equal(sol.y[:], here.y)
    assert sol.stats == here.stats and list(sol.retcodes) == list(here.retcodes)
    # the per-trajectory counts of the chunks stored before the stop and of those computed after
    assert set(sol.trajectory_stats) == set(here.trajectory_stats)
    for k, v in here.trajectory_stats.items():
        np.testing.assert_array_equal(sol.trajectory_stats[k], v)


def test_a_store_begun_before_the_counts_were_kept_resumes_without_them(tmp_path, monkeypatch):
    """A store without counts.npy (written by an earlier sdekit) keeps its chunks (their checksums leave the counts
    out) and gives trajectory_stats None rather than counts for some chunks only."""
    store = tmp_path / "run"
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=350, store=store, store_format="npy")
    (store / "counts.npy").unlink()
    import json
    manifest = json.loads((store / "manifest.json").read_text())
    import hashlib
    y, codes = np.load(store / "y.npy"), np.load(store / "retcodes.npy")
    for name, entry in manifest["chunks"].items():      # the checksums an earlier sdekit wrote: states and retcodes
        a, b = (int(x) for x in name.split("-"))
        h = hashlib.sha256(np.ascontiguousarray(y[a:b]).tobytes())
        h.update(np.ascontiguousarray(codes[a:b]).tobytes())
        entry["sha256"] = h.hexdigest()
    (store / "manifest.json").write_text(json.dumps(manifest))
    calls = _counting(monkeypatch)
    again = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=350, store=store)
    assert calls == [] and again.trajectory_stats is None
    np.testing.assert_array_equal(again.y[:], here.y[:])


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_damaged_chunk_in_the_store_is_computed_again(tmp_path, monkeypatch, fmt):
    store = tmp_path / "run"
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=250, store=store, store_format=fmt)
    want = np.array(here.y[:])
    if fmt == "npy":
        y = np.load(store / "y.npy", mmap_mode="r+")
        y[260, 1, 2] += 1.0                                # one value of the second chunk
        y.flush()
    else:
        import zarr
        y = zarr.open_array(store / "y.zarr", mode="r+")
        y[260, 1, 2] = y[260, 1, 2] + 1.0
    calls = _counting(monkeypatch)
    again = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=250, store=store, store_format=fmt)
    assert calls == [(250, 500)]
    np.testing.assert_array_equal(again.y[:], want)


def test_a_zarr_chunk_lost_from_the_store_is_computed_again(tmp_path, monkeypatch):
    """zarr keeps a chunk per file; a deleted file reads as zeros, which fail the checksum."""
    store = tmp_path / "run"
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=250, store=store, store_format="zarr")
    want = np.array(here.y[:])
    files = sorted(f for f in (store / "y.zarr").rglob("*") if f.is_file() and "zarr" not in f.name)
    assert len(files) == 3                                 # one per solve chunk
    files[-1].unlink()                                     # the last chunk's file ("c/2/0/0")
    calls = _counting(monkeypatch)
    again = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=250, store=store)
    assert calls == [(500, 700)]
    np.testing.assert_array_equal(again.y[:], want)


def _garble(path, how):
    import numcodecs
    data = path.read_bytes() if path.exists() else b""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes({"flip a byte": lambda: bytes([data[0] ^ 0x40]) + data[1:],
                      "flip the last byte": lambda: data[:-1] + bytes([data[-1] ^ 0x01]),
                      "truncate": lambda: data[:len(data) // 2], "empty": lambda: b"",
                      "short frame": lambda: numcodecs.Zstd().encode(numcodecs.Zstd().decode(data)[:1000]),
                      "junk": lambda: b"not a zstd frame"}[how]())


@pytest.mark.parametrize("chunk, how", [("y.zarr/c/1/0/0", how) for how in
                                        ("flip a byte", "flip the last byte", "truncate", "empty", "short frame")]
                         + [("y.zarr/c/2/0/0", "truncate"),      # the last chunk, shorter than the others
                            ("retcodes.zarr/c/1", "junk")])       # (all Success: zarr wrote no file)
def test_a_garbled_or_truncated_zarr_chunk_is_computed_again(tmp_path, monkeypatch, chunk, how):
    """A chunk file that no longer decompresses (numcodecs' Zstd raises RuntimeError, a whole frame
    of the wrong length ValueError) is damaged like one whose bytes changed: computed again, not a
    crash, and the result is the undamaged one bit for bit."""
    store = tmp_path / "run"
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS)
    sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=250, store=store, store_format="zarr")
    _garble(store / chunk, how)
    calls = _counting(monkeypatch)
    again = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=250, store=store)
    assert calls == [(250, 500) if "/1" in chunk else (500, 700)]
    np.testing.assert_array_equal(again.y[:], here.y)
    assert list(again.retcodes) == list(here.retcodes) and again.stats == here.stats


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("how", ["truncate", "garble", "not a manifest"])
def test_a_damaged_manifest_computes_the_store_again_with_a_warning(tmp_path, monkeypatch, fmt, how):
    """manifest.json written atomically is damaged only from outside; without it no chunk can be
    verified (nor that the store holds this solve), so every chunk is computed again into fresh
    arrays, as damaged chunks are, with a warning naming the file; the store then resumes as usual."""
    store = tmp_path / "run"
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS)
    saveat = [0.0, 1.0] if how == "truncate" else TS        # (a different solve's arrays are not reused)
    sk.solve(ENS, "SETD1", dt=0.01, saveat=saveat, chunk_size=250, store=store, store_format=fmt)
    manifest = store / "manifest.json"
    if how == "truncate":
        manifest.write_text(manifest.read_text()[:40])
    elif how == "garble":
        manifest.write_bytes(b"\xff\xfe" + manifest.read_bytes()[2:])
    else:
        manifest.write_text("[]")
    calls = _counting(monkeypatch)
    with pytest.warns(UserWarning, match=f"{manifest} is damaged .*every chunk is computed again"):
        again = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=250, store=store, store_format=fmt)
    assert calls == [(0, 250), (250, 500), (500, 700)] and _on_disk(again, fmt)
    np.testing.assert_array_equal(again.y[:], here.y)
    np.testing.assert_array_equal(again.t, here.t)
    assert list(again.retcodes) == list(here.retcodes) and again.stats == here.stats
    calls.clear()
    sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=250, store=store)
    assert calls == []


def test_a_store_refuses_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="store_format must be one of 'auto', 'zarr', 'npy', got 'hdf5'"):
        sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, store=tmp_path / "run", store_format="hdf5")


def test_a_store_refuses_a_different_solve(tmp_path):
    sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=350, store=tmp_path / "run")
    for change in ({"dt": 0.02}, {"saveat": [0.0, 0.25, 1.0]}):
        kw = {"dt": 0.01, "chunk_size": 350, "saveat": TS, **change}
        with pytest.raises(ValueError, match="holds a different solve"):
            sk.solve(ENS, "SETD1", store=tmp_path / "run", **kw)
    with pytest.raises(ValueError, match="holds a different solve"):
        sk.solve(demo_problem(700, seed=6), "SETD1", dt=0.01, saveat=TS, chunk_size=350, store=tmp_path / "run")
    with pytest.raises(ValueError, match="is chunked in 2 chunks of 350; resume it with that chunk_size"):
        sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=300, store=tmp_path / "run")


def test_a_store_resumes_its_own_chunking_when_none_is_given(tmp_path, monkeypatch):
    """The automatic chunking depends on the cluster; a store keeps the one it started with."""
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS)
    calls = _counting(monkeypatch, fail_at=2)
    with pytest.raises(Stop):
        sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=100, store=tmp_path / "run")
    monkeypatch.undo()
    calls = _counting(monkeypatch)
    sol = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, store=tmp_path / "run", progress=True)
    assert sorted(calls) == [(a, a + 100) for a in range(100, 700, 100)]
    np.testing.assert_array_equal(sol.y, here.y)


def test_a_store_or_a_memory_limit_without_a_chunk_size_chunks_automatically(tmp_path):
    """store= (or memory_limit=) alone: the automatic chunking (it was a TypeError in ChunkStore), the same states,
    and a resume of that store keeps them."""
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, backend="numpy")
    sol = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, backend="numpy", store=tmp_path / "auto")
    np.testing.assert_array_equal(sol.y, here.y)
    again = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, backend="numpy", store=tmp_path / "auto")
    np.testing.assert_array_equal(again.y, here.y)
    with pytest.warns(UserWarning, match="more than memory_limit"):
        spilled = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, backend="numpy", memory_limit=1000)
    np.testing.assert_array_equal(spilled.y, here.y)


def test_reductions_of_chunks_with_no_finite_trajectory():
    """dy = y³ dt + dW/10 from 5 blows up: a chunk of only such trajectories adds nothing (quantiles raised an
    IndexError); with none finite at all, the count is 0 and the mean, variance and quantiles are NaN."""
    y = sk.states("y", 1)
    prob = sk.SDEProblem(sk.SDE(y, drift=y**3, diffusion=sp.Rational(1, 10)), [1.0], (0.0, 1.0))
    mixed = sk.Ensemble(prob, y0=np.r_[np.full(20, 5.0), np.full(10, 0.1)][:, None], seed=0)
    kw = dict(dt=0.01, backend="numpy", chunk_size=10)
    finite = sk.solve(mixed, "EM", dt=0.01, backend="numpy").y[20:]
    q = sk.solve(mixed, "EM", reduction="quantiles", **kw)
    m = sk.solve(mixed, "EM", reduction="moments", **kw)
    assert q.value.count == m.value.count == 10 and q.retcodes == {"Success": 10, "Unstable": 20}
    np.testing.assert_allclose(q.value.quantile(0.5), np.median(finite, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.value.mean, finite.mean(axis=0), rtol=1e-12)
    none = sk.Ensemble(prob, y0=np.full((20, 1), 5.0), seed=0)
    m, q = (sk.solve(none, "EM", reduction=r, **kw).value for r in ("moments", "quantiles"))
    assert m.count == 0 and np.all(np.isnan(m.mean)) and np.all(np.isnan(m.variance))
    assert q.count == 0 and np.all(np.isnan(q.quantile([0.1, 0.5])))


def test_states_above_the_memory_limit_stream_to_a_temporary_store():
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS)
    with pytest.warns(UserWarning, match="more than memory_limit: they stream to") as caught:
        sol = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=200, memory_limit=10_000, store_format="npy")
    folder = Path(str(caught[0].message).split("stream to ")[1].split(" ")[0])
    assert isinstance(sol.y, np.memmap) and (folder / "y.npy").exists()
    np.testing.assert_array_equal(sol.y, here.y)
    view = sol.y[100:]
    del sol
    gc.collect()
    assert folder.exists()                                  # a view still reads from it
    np.testing.assert_array_equal(view, here.y[100:])
    del view
    gc.collect()
    assert not folder.exists()                              # removed with the last of the states
    small = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=200, memory_limit=10**9)   # fits: in memory
    assert not isinstance(small.y, np.memmap)


def test_a_reduction_over_a_million_trajectories_never_holds_their_states():
    """dy = −y dt + ½ dW, 10^6 trajectories, 3 saved times: the states would take 24 MB; the
    chunked reduction's peak allocation stays below a third of that, and its moments are exact."""
    y = sk.states("y", 1)
    prob = sk.SDEProblem(sk.SDE(y, drift=-y, diffusion=sp.Rational(1, 2), noise="scalar"), y0=[1.0], tspan=(0.0, 1.0))
    ens = sk.Ensemble(prob, n=10**6, seed=0)
    full = 10**6 * 3 * 1 * 8
    sk.solve(sk.Ensemble(prob, n=10, seed=0), "EM", dt=0.1, saveat=[0.0, 0.5, 1.0])       # compile first
    tracemalloc.start()
    red = sk.solve(ens, "EM", dt=0.1, saveat=[0.0, 0.5, 1.0], chunk_size=50_000, reduction="moments")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < full / 3, (peak, full)
    m = red.value
    assert m.count == 10**6 and red.retcodes == {"Success": 10**6}
    # EM is exact in distribution for the mean of OU up to (1 - h)^k vs e^{-t}: compare with its own recursion
    h, k = 0.1, np.array([0, 5, 10])
    np.testing.assert_allclose(m.mean[:, 0], (1 - h) ** k, atol=5 * 0.5 / np.sqrt(10**6) + 1e-12)
    var_em = 0.25 * h * (1 - (1 - h) ** (2 * k)) / (1 - (1 - h) ** 2)
    np.testing.assert_allclose(m.variance[:, 0], var_em, rtol=0.02, atol=1e-12)


def test_quantiles_reduce_chunk_by_chunk():
    """reduction="quantiles" through solve: 700 trajectories fit one sketch, so the quantiles are the
    exact ones of the saved states."""
    y = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS).y
    red = sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=50, reduction="quantiles")
    q = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    got = red.value.quantile(q)
    assert got.shape == (5, 3, 4) and red.value.count == 700
    ranks = (y[None] <= got[:, None]).mean(axis=1)            # the fraction of trajectories below each quantile
    assert np.abs(ranks - q[:, None, None])[:, 1:].max() < 0.005     # t = 0 is one value: every rank at once
    np.testing.assert_array_equal(got[:, 0], np.broadcast_to(y[0, 0], (5, 4)))


@pytest.mark.parametrize("chunk", [7000, 300])
def test_quantile_sketches_merge_within_their_rank_error(chunk):
    """10^5 values in chunks of 7000 (15 merges) or 300 (334 merges), sketches of 1024 points: the
    rank error of the 1 % ... 99 % quantiles stays below 0.3 % and 1 %."""
    from sdekit.distributed import QuantileSketch
    rng = np.random.default_rng(0)
    y = rng.standard_normal((100_000, 3, 2)) * np.array([1.0, 2.0]) + np.array([0.0, 1.0, 2.0])[:, None]
    y[5] = np.nan                                           # a failed trajectory is left out
    sketch = None
    for a in range(0, len(y), chunk):
        part = QuantileSketch.of(y[a:a + chunk])
        sketch = part if sketch is None else sketch.combine(part)
    q = np.array([0.01, 0.1, 0.5, 0.9, 0.99])
    got = sketch.quantile(q)
    ok = np.delete(y, 5, axis=0)
    ranks = (ok[None] <= got[:, None]).mean(axis=1)
    assert sketch.count == pytest.approx(99_999)
    assert np.abs(ranks - q[:, None, None]).max() < (0.003 if chunk == 7000 else 0.01)


def test_the_store_fingerprint_sees_activations_option_names_and_external_weights():
    """A store resumed with another MLP activation, the same values under another option name (saveat vs tstops),
    or a retrained torch module as External network is another solve (each used to hand back the stored states)."""
    torch = pytest.importorskip("torch")
    from sdekit.store import fingerprint
    rng = np.random.default_rng(0)
    W = [(rng.normal(size=(8, 2)), rng.normal(size=8)), (rng.normal(size=(2, 8)), rng.normal(size=2))]
    y = sk.states("y", 2)

    def ens(net, weights):
        model = sk.SDE(y, drift=-y + net(y), diffusion=sp.Rational(1, 10), noise="diagonal")
        return sk.Ensemble(sk.SDEProblem(model, y0=np.ones(2), tspan=(0.0, 1.0), nets={"f": weights}), n=4, seed=1)
    tanh, relu = (ens(sk.MLP("f", [2, 8, 2], activation=a), W) for a in ("tanh", "relu"))
    assert fingerprint(tanh, "EM", 0.01, {}) != fingerprint(relu, "EM", 0.01, {})
    assert fingerprint(tanh, "SRA1", None, {"saveat": [0.0, 0.5, 1.0]}) != \
        fingerprint(tanh, "SRA1", None, {"tstops": [0.0, 0.5, 1.0]})
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    external = sk.External("f", 2, 2)
    before = fingerprint(ens(external, module), "EM", 0.01, {})
    assert fingerprint(ens(external, module), "EM", 0.01, {}) == before       # the same network: resumable
    with torch.no_grad():
        module[0].weight += 0.1
    assert fingerprint(ens(external, module), "EM", 0.01, {}) != before


def test_a_store_path_that_is_not_a_folder_and_a_bad_memory_limit_are_named(tmp_path):
    (tmp_path / "file").write_text("x")
    for store, match in [("", "store must be a folder path"), (123, "store must be a folder path"),
                         (tmp_path / "file", "is a file: give a folder path")]:
        with pytest.raises(ValueError, match=match):
            sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=350, store=store)
    with pytest.raises(ValueError, match="memory_limit must be a number of bytes > 0, got 'lots'"):
        sk.solve(ENS, "SETD1", dt=0.01, saveat=TS, chunk_size=350, store=tmp_path / "run", memory_limit="lots")


def test_a_chunked_solve_gathered_in_memory_warns_of_the_whole_solves_states(monkeypatch):
    """The memory budget applies to what sol.y will hold: all chunks' states, not one chunk's (it used to be checked
    per chunk only, so chunking hid a large result); the message says how to keep them off memory."""
    monkeypatch.setenv("SDEKIT_MEMORY_BUDGET_GB", "0.002")     # 2 MiB: more than a chunk holds, less than all
    with pytest.warns(UserWarning, match=r"saves 101 states of 700 trajectories: sol.y will take 2.2 MiB.*store="):
        sk.solve(ENS, "SETD1", dt=0.01, saveat="steps", chunk_size=350)
