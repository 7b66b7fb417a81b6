"""Generated source lives in files named by its hash, so it can be imported, cached and read.

Recipe (platform-notes.md): ``<cache>/<sha256[:16]>/<kind>.py`` written only if missing
(temp file + ``os.replace``, safe for concurrent writers) and imported under a stable
module name registered in ``sys.modules`` before execution (Numba's on-disk cache needs both).

Robust against what happens to caches: a file whose content no longer has its hash (truncated,
garbled) is written again; Numba's compiled files of a kernel that fail to load are removed and
the kernel compiled again (:func:`purge_compiled`, called by the launchers); a cache folder that
cannot be written is replaced, for the process, by a temporary one, with a warning.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path

_USABLE: dict = {}     # configured cache folder -> the folder used (itself, or a temporary stand-in)


def cache_dir() -> Path:
    """``$SDEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sdekit`` (default ``~/.cache/sdekit``); when
    that cannot be written, a temporary folder for this process (with a warning)."""
    root = os.environ.get("SDEKIT_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sdekit")
    root = Path(root)
    if root not in _USABLE:
        _USABLE[root] = _writable_or_temporary(root)
    return _USABLE[root]


def _writable_or_temporary(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, suffix=".probe")
        os.close(fd)
        os.unlink(probe)
        return root
    except OSError as e:
        import atexit
        import shutil
        stand_in = Path(tempfile.mkdtemp(prefix="sdekit-cache-"))
        atexit.register(shutil.rmtree, stand_in, ignore_errors=True)      # this process's only: gone at exit
        why = "it is a file" if root.is_file() else e.strerror or e
        warnings.warn(f"the sdekit kernel cache {root} cannot be written ({why}); compiled kernels go to "
                      f"{stand_in} for this process only. Set SDEKIT_CACHE_DIR to a writable folder to keep them.",
                      RuntimeWarning, stacklevel=3)
        return stand_in


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def write_source(source: str, kind: str, suffix: str = ".py") -> Path:
    """Path of the file holding ``source`` (written once)."""
    digest = source_hash(source)
    folder = cache_dir() / digest
    path = folder / f"{kind}{suffix}"
    if path.exists() and _content_hash(path) != digest:      # truncated or garbled: write it again
        warnings.warn(f"cached kernel source {path} was damaged; writing it again", RuntimeWarning, stacklevel=3)
        purge_compiled(path)
        path.unlink(missing_ok=True)            # another process may have found it first
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(source)
        os.replace(tmp, path)
    return path


def _content_hash(path: Path) -> str | None:
    try:
        return source_hash(path.read_bytes().decode())
    except (OSError, UnicodeDecodeError):
        return None


def compiled_files(source_path) -> list:
    """What was compiled from the generated file ``source_path``: Numba's index (.nbi) and data
    (.nbc) files of its functions — in ``__pycache__`` beside it, or under ``$NUMBA_CACHE_DIR``
    where Numba's locator puts them — and a host library (.so) beside it."""
    path = Path(source_path)
    folders = [path.parent / "__pycache__"]
    from numba.core import config
    if config.CACHE_DIR:
        from numba.core.caching import _CacheLocator
        folders.append(Path(config.CACHE_DIR) / _CacheLocator.get_suitable_cache_subpath(str(path)))
    found = [f for d in folders for f in d.glob(f"{path.stem}.*") if f.suffix in (".nbi", ".nbc")]
    return sorted(found + list(path.parent.glob(f"{path.stem}*.so")))


def purge_compiled(source_path) -> int:
    """Remove :func:`compiled_files` of ``source_path``: the next call compiles again.  Returns
    how many files went."""
    gone = 0
    for f in compiled_files(source_path):
        try:
            f.unlink()
            gone += 1
        except FileNotFoundError:
            pass
    return gone


def loaded_from_damaged_cache(error: BaseException) -> bool:
    """True when ``error`` came out of Numba's on-disk cache (a file that does not unpickle)."""
    import traceback
    return any("numba/core/caching" in frame.filename.replace(os.sep, "/")
               for frame in traceback.extract_tb(error.__traceback__))


def runtime_fingerprint() -> str:
    """Hash of the runtime modules generated code imports: a changed runtime (an upgrade, an
    edit) changes every generated file, so neither our cache nor Numba's can serve stale code."""
    from .. import abi
    here = Path(__file__).parent
    h = hashlib.sha256()
    runtime = ("numba_runtime.py", "philox.py", "brownian.py", "numpy_runtime.py", "matfun.py",
               "field_runtime.py")        # every module whose njit functions generated kernels call
    for path in [here / name for name in runtime] + [Path(abi.__file__)]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def load_module(source: str, kind: str):
    """Import generated ``source`` as module ``sdekit_generated_<kind>_<hash>`` (reused if loaded).

    The file starts with a line naming the runtime fingerprint, so it is part of the hash."""
    source = f"# sdekit runtime {runtime_fingerprint()}\n" + source
    name = f"sdekit_generated_{kind}_{source_hash(source)}"
    if name in sys.modules:
        return sys.modules[name]
    path = write_source(source, kind)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
