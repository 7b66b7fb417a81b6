"""Generated source lives in files named by its hash, so it can be imported, cached and read.

Recipe (platform-notes.md): ``<cache>/<sha256[:16]>/<kind>.py`` written only if missing
(temp file + ``os.replace``, safe for concurrent writers) and imported under a stable
module name registered in ``sys.modules`` before execution (Numba's on-disk cache needs both).

Robust against what happens to caches: a file whose content no longer has its hash (truncated,
garbled) is written again; Numba's compiled files of a kernel that fail to load are removed and
the kernel compiled again (:func:`purge_compiled`, called by the launchers); a cache folder that
cannot be written is replaced, for the process, by a temporary one, with a warning — and when it is a
folder that can be read (a read-only image or share filled beforehand), the kernels it holds are copied
from it, with their compiled files, instead of being compiled again.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path


def _process_umask() -> int:
    """The process's umask (os.umask reads it only by setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()   # once, at import


def publish(tmp, path, mode: int = 0o666):
    """Move the finished temporary file ``tmp`` to ``path`` (``os.replace``: a reader never sees half a file), with
    the permissions a plain ``open`` would give it (``mode`` less the umask; ``mkstemp`` makes 0600), so that other
    users can read a shared cache."""
    os.chmod(tmp, mode & ~_UMASK)
    os.replace(tmp, path)


#: configured cache folder -> (the folder used: itself or a temporary stand-in, a read-only folder whose kernels
#: are reused or None)
_USABLE: dict = {}


def cache_dir() -> Path:
    """``$SDEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sdekit`` (default ``~/.cache/sdekit``); when
    that cannot be written, a temporary folder for this process (with a warning)."""
    return _cache_folders()[0]


def _cache_folders():
    root = os.environ.get("SDEKIT_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sdekit")
    root = Path(root)
    if root not in _USABLE:
        _USABLE[root] = _writable_or_temporary(root)
    return _USABLE[root]


def _probe_writable(root: Path):
    """Raise OSError unless a file can be made in ``root`` (created if missing)."""
    root.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=root, suffix=".probe")
    os.close(fd)
    os.unlink(probe)


def _writable_or_temporary(root: Path):
    """(``root``, None) when it can be written; else (a temporary folder for this process, ``root`` when it is a
    folder whose kernels can be read), with a warning."""
    try:
        _probe_writable(root)
        return root, None
    except OSError as e:
        import atexit
        stand_in = Path(tempfile.mkdtemp(prefix="sdekit-cache-"))
        atexit.register(_remove_stand_in, stand_in)      # this process's only: gone at exit
        why = "it is a file" if root.is_file() else e.strerror or e
        seed = root if root.is_dir() and os.access(root, os.R_OK | os.X_OK) else None
        what = (f"the kernels it holds are copied from it where they can be read, others compiled into {stand_in}"
                if seed else f"compiled kernels go to {stand_in}")
        warnings.warn(f"the sdekit kernel cache {root} cannot be written ({why}); {what} for this process only. "
                      "Set SDEKIT_CACHE_DIR to a writable folder to keep them.", RuntimeWarning, stacklevel=4)
        return stand_in, seed


def _remove_stand_in(stand_in: Path):
    """Remove a temporary cache folder and what Numba compiled from it into ``$NUMBA_CACHE_DIR`` (a folder per
    kernel, named by its path: nothing would ever read them again)."""
    if not stand_in.is_dir():
        return
    for folder in (f for f in stand_in.iterdir() if f.is_dir()):
        numba_folder = _numba_cache_folder(folder / "numba.py")
        if not numba_folder.is_relative_to(stand_in):
            shutil.rmtree(numba_folder, ignore_errors=True)
    shutil.rmtree(stand_in, ignore_errors=True)


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def write_source(source: str, kind: str, suffix: str = ".py") -> Path:
    """Path of the file holding ``source`` (written once)."""
    digest = source_hash(source)
    usable, seed = _cache_folders()
    folder = usable / digest
    path = folder / f"{kind}{suffix}"
    if seed is not None and not path.exists() and _content_hash(seed / digest / path.name) == digest:
        try:
            _copy_with_compiled(seed / digest / path.name, path)
        except OSError:             # the source could not be copied: written (and compiled) here instead
            pass
    if path.exists() and _content_hash(path) != digest:      # truncated or garbled: write it again
        warnings.warn(f"cached kernel source {path} was damaged; writing it again", RuntimeWarning, stacklevel=3)
        purge_compiled(path)
        path.unlink(missing_ok=True)            # another process may have found it first
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(source)
        publish(tmp, path)
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
    folders = dict.fromkeys([path.parent / "__pycache__", _numba_cache_folder(path)])
    found = [f for d in folders for f in d.glob(f"{path.stem}.*") if f.suffix in (".nbi", ".nbc")]
    return sorted(found + list(path.parent.glob(f"{path.stem}*.so")))


def _numba_cache_folder(source_path: Path) -> Path:
    """Where Numba keeps what it compiles from ``source_path``: ``$NUMBA_CACHE_DIR`` (its subfolder for the
    file's folder) when set, else ``__pycache__`` beside it."""
    from numba.core import config
    if config.CACHE_DIR:
        from numba.core.caching import _CacheLocator
        return Path(config.CACHE_DIR) / _CacheLocator.get_suitable_cache_subpath(str(source_path))
    return source_path.parent / "__pycache__"


def _copy_with_compiled(seed_path: Path, path: Path):
    """Copy a kernel's source from a read-only cache, and its :func:`compiled_files` to where Numba reads them for
    ``path``: ``$NUMBA_CACHE_DIR``'s folder, or where Numba falls back to when that cannot be written, ``__pycache__``
    beside it.  Compiled files are copied as far as they can be (one that cannot be read is compiled again); the
    source last, so a source that exists has its compiled files beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    numba_folder = _numba_cache_folder(path)
    try:
        _probe_writable(numba_folder)
    except OSError:
        numba_folder = path.parent / "__pycache__"
    for f in compiled_files(seed_path):
        try:
            _copy_file(f, (path.parent if f.suffix == ".so" else numba_folder) / f.name)
        except OSError:
            pass
    _copy_file(seed_path, path)


def _copy_file(src: Path, dst: Path):
    """``src`` to ``dst`` through a temporary file (a reader never sees half of it), modification time kept (Numba's
    index names a source by its content's hash; older releases by time and size)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, suffix=".tmp")
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
