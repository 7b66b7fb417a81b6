"""The kernel cache survives concurrency and corruption (issue 18 item 7): two processes compiling
the same kernel at once both succeed with the same result; a truncated or garbled source file,
Numba index or data file, or host library is detected and rebuilt (with a warning); a cache
folder that cannot be written falls back to a temporary one with a warning, and lends the kernels it holds."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import sdekit as sk
from sdekit.kernels import cache

# a small model of its own, so each test compiles a kernel no other test has in its cache folder
_SOLVE = textwrap.dedent("""
    import numpy as np, sympy as sp, sdekit as sk
    y = sk.states("y", 2)
    model = sk.SDE(y, drift=sp.Matrix([-y[0] + sp.sin(y[1]), -2 * y[1] + sp.cos(y[0])]), diffusion=sp.Rational(1, 5))
    prob = sk.SDEProblem(model, y0=[0.5, 0.1], tspan=(0.0, 1.0))
    def run(backend="numba"):
        return sk.solve(sk.Ensemble(prob, n=300, seed=2), "EM", dt=0.01, backend=backend).y
    def run_ode(backend):
        ode = sk.ODEProblem(sk.ODE(y, model.form.forcing), y0=[0.5, 0.1], tspan=(0.0, 1.0))
        return sk.solve(ode, "RK4", dt=0.05, backend=backend).y
""")


def _run_here(backend="numba"):
    scope = {}
    exec(_SOLVE, scope)
    return scope["run"](backend)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SDEKIT_CACHE_DIR", str(tmp_path / "cache"))
    for name in [m for m in sys.modules if m.startswith("sdekit_generated_")]:
        monkeypatch.delitem(sys.modules, name)       # import the kernels from this folder again
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def filled():
    """(folder, states): a cache holding the model's EM kernel, compiled once a module (and worker); a test copies it
    into its own folder (:func:`_fill`) rather than compiling the kernel again."""
    import tempfile
    folder = Path(tempfile.mkdtemp(dir=os.environ["SDEKIT_CACHE_DIR"], prefix="filled-"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SDEKIT_CACHE_DIR", str(folder))
        for name in [m for m in sys.modules if m.startswith("sdekit_generated_")]:
            mp.delitem(sys.modules, name)
        y = _run_here()
    return folder, y


def _fill(filled, folder: Path):
    """Copy the ``filled`` cache's kernels, with their compiled files, into ``folder``."""
    for source in _files(filled[0], "*/*.py"):
        cache._copy_with_compiled(source, folder / source.parent.name / source.name)


def _files(root: Path, pattern: str) -> list:
    return sorted(root.glob(pattern))


def _damage(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\x00garbage")


def test_two_processes_compiling_the_same_kernel_at_once_both_succeed(fresh_cache, tmp_path):
    script = _SOLVE + "np.save(__import__('sys').argv[1], run())\n"
    env = dict(os.environ, SDEKIT_CACHE_DIR=str(fresh_cache))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"y{k}.npy")], env=env,
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    a, b = (np.load(tmp_path / f"y{k}.npy") for k in range(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, _run_here())       # and the cache they left serves this process
    assert len(_files(fresh_cache, "*/numba.py")) == 1 and not _files(fresh_cache, "*/*.tmp")


@pytest.mark.parametrize("module, damaged", [("numba", ".py"), ("numba", ".nbi"), ("numba", ".nbc"), ("numba_lanes", ".nbc")],
                         ids=["source", "numba-index", "numba-data", "lane-functions-data"])
def test_a_damaged_cache_file_is_rebuilt(fresh_cache, filled, module, damaged, tmp_path):
    """The kernel's module, or the model's lane functions it imports (a module of their own, shared by methods).  A
    cached kernel holds its lane functions' code, so their files are read when a kernel compiles against them: another
    method on the model, here the same kernel with its own compiled files removed."""
    _fill(filled, fresh_cache)
    want = _run_here()
    np.testing.assert_array_equal(want, filled[1])
    (source,) = _files(fresh_cache, f"*/{module}.py")
    files = [source] if damaged == ".py" else [f for f in cache.compiled_files(source) if f.suffix == damaged]
    assert files, f"no {damaged} file written"
    for f in files:
        _damage(f)
    if module == "numba_lanes":
        (kernel,) = _files(fresh_cache, "*/numba.py")
        assert cache.purge_compiled(kernel) > 0
    # a new process: the damaged files are read from disk, not from this process's memory
    script = _SOLVE + "np.save(__import__('sys').argv[1], run())\n"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "y.npy")], capture_output=True, text=True,
                          env=dict(os.environ, SDEKIT_CACHE_DIR=str(fresh_cache)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RuntimeWarning" in done.stderr and ("damaged" in done.stderr or "did not load" in done.stderr)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    # and it is whole again: the next process loads it silently (the lane functions: read by a kernel that compiles)
    if module == "numba_lanes":
        assert cache.purge_compiled(kernel) > 0
    again = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", script, str(tmp_path / "y2.npy")],
                           capture_output=True, text=True, env=dict(os.environ, SDEKIT_CACHE_DIR=str(fresh_cache)),
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]


def test_a_damaged_host_library_is_rebuilt(fresh_cache, tmp_path):
    script = _SOLVE + "np.save(__import__('sys').argv[1], run_ode('cuda-host'))\n"
    env = dict(os.environ, SDEKIT_CACHE_DIR=str(fresh_cache))
    runs = []
    for k in range(2):          # processes of their own: dlopen would hand this one the library it loaded
        runs.append(subprocess.run([sys.executable, "-c", script, str(tmp_path / f"y{k}.npy")], capture_output=True,
                                   text=True, env=env, timeout=300))
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
        if k == 0:
            (lib,) = _files(fresh_cache, "*/kernel*.so")
            lib.write_bytes(b"\x7fELF truncated")
    assert "did not load" in runs[1].stderr and "building it again" in runs[1].stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y1.npy"), np.load(tmp_path / "y0.npy"))


def test_an_unwritable_cache_folder_falls_back_to_a_temporary_one(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SDEKIT_CACHE_DIR", str(blocker / "cache"))     # cannot be created, even by root
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        folder = cache.cache_dir()
    assert folder != blocker / "cache" and folder.is_dir()
    assert cache.cache_dir() == folder                                   # one warning, one stand-in per process
    np.testing.assert_array_equal(_run_here("numpy"), _run_here("numpy"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_cache_folder_falls_back_to_a_temporary_one(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("SDEKIT_CACHE_DIR", str(ro))
    try:
        with pytest.warns(RuntimeWarning, match="cannot be written"):
            assert cache.cache_dir() != ro
    finally:
        ro.chmod(0o700)


def test_a_read_only_cache_lends_the_kernels_it_holds(fresh_cache, filled, monkeypatch):
    """A cache filled beforehand (a container image, a shared folder) that this process cannot write: its kernels
    are copied out with their compiled files and loaded, not compiled again, and it is left as it was.  The seed
    holds Numba's files beside the sources (an image built without NUMBA_CACHE_DIR); this process reads them from
    $NUMBA_CACHE_DIR (the suite's), so the copy moves them between Numba's two layouts."""
    _fill(filled, fresh_cache)
    for source in _files(fresh_cache, "*/*.py"):             # Numba's files into __pycache__ beside each source
        (source.parent / "__pycache__").mkdir()
        for f in cache.compiled_files(source):
            f.rename(source.parent / "__pycache__" / f.name)
    assert len(_files(fresh_cache, "*/__pycache__/*.nbc")) >= 2      # the kernel's and its lane functions'
    seed = sorted((p, p.stat().st_mtime_ns) for p in fresh_cache.rglob("*"))

    def refused(root, probe=cache._probe_writable):
        if root == fresh_cache:
            raise PermissionError(13, "Permission denied")    # as a read-only folder is, even to root
        probe(root)
    monkeypatch.setattr(cache, "_probe_writable", refused)
    scope = {}
    exec(_SOLVE, scope)
    with pytest.warns(RuntimeWarning, match="the kernels it holds are copied from it"):
        y = scope["run"]()
    np.testing.assert_array_equal(y, filled[1])
    from sdekit.solve import plan
    kernel = plan(sk.Ensemble(scope["prob"], n=300, seed=2), "EM", dt=0.01).kernel.module.kernel
    assert len(kernel.stats.cache_hits) >= 1 and not kernel.stats.cache_misses    # loaded, not compiled
    assert cache.cache_dir() != fresh_cache and _files(cache.cache_dir(), "*/numba.py")
    assert sorted((p, p.stat().st_mtime_ns) for p in fresh_cache.rglob("*")) == seed   # the seed untouched
    stand_in = cache.cache_dir()        # at exit: the temporary folder goes, with what Numba keeps for its kernels
    lent = [cache._numba_cache_folder(p) for p in _files(stand_in, "*/numba.py")]
    assert lent and all(f.is_dir() and not f.is_relative_to(stand_in) for f in lent)     # in $NUMBA_CACHE_DIR
    cache._remove_stand_in(stand_in)
    assert not stand_in.exists() and not any(f.exists() for f in lent)


def test_lending_copies_what_it_can_to_where_numba_reads(tmp_path, monkeypatch):
    """The copy out of a read-only cache is best effort: a compiled file that cannot be read is left out (Numba
    compiles it again), and where $NUMBA_CACHE_DIR cannot be written the files go to ``__pycache__`` beside the
    copy, where Numba falls back to as well; the source comes last."""
    seed = tmp_path / "seed" / "0123456789abcdef"
    (seed / "__pycache__").mkdir(parents=True)
    (seed / "numba.py").write_text("x = 1\n")
    for name in ("numba.kernel-12.py311.nbi", "numba.kernel-12.py311.1.nbc"):
        (seed / "__pycache__" / name).write_bytes(name.encode())
    (seed / "__pycache__" / "numba.rhs-3.py311.nbi").symlink_to(tmp_path / "gone")      # cannot be read
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(cache, "_numba_cache_folder", lambda path: blocker / "numba")   # cannot be made, even by root
    copy = tmp_path / "stand-in" / seed.name / "numba.py"
    cache._copy_with_compiled(seed / "numba.py", copy)
    assert copy.read_text() == "x = 1\n"
    assert sorted(f.name for f in (copy.parent / "__pycache__").iterdir()) == ["numba.kernel-12.py311.1.nbc",
                                                                               "numba.kernel-12.py311.nbi"]
    assert (copy.parent / "__pycache__" / "numba.kernel-12.py311.nbi").stat().st_mtime_ns == \
        (seed / "__pycache__" / "numba.kernel-12.py311.nbi").stat().st_mtime_ns


def test_cached_files_are_readable_by_other_users(fresh_cache, monkeypatch):
    """A cache filled by one user and read by another (an image built as root, a shared folder): sources get the
    permissions ``open`` gives (0666 less the umask), not ``mkstemp``'s 0600."""
    monkeypatch.setattr(cache, "_UMASK", 0o022)
    path = cache.write_source("x = 1\n", "numba")
    assert path.stat().st_mode & 0o777 == 0o644
