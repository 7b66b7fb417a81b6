"""Generated source lives in files named by its hash, so it can be imported, cached and read.

Recipe (platform-notes.md): ``<cache>/<sha256[:16]>/<kind>.py`` written only if missing
(temp file + ``os.replace``, safe for concurrent writers) and imported under a stable
module name registered in ``sys.modules`` before execution (Numba's on-disk cache needs both).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """``$SDEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sdekit`` (default ``~/.cache/sdekit``)."""
    root = os.environ.get("SDEKIT_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sdekit")
    return Path(root)


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def write_source(source: str, kind: str, suffix: str = ".py") -> Path:
    """Path of the file holding ``source`` (written once)."""
    folder = cache_dir() / source_hash(source)
    path = folder / f"{kind}{suffix}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)
    return path


def runtime_fingerprint() -> str:
    """Hash of the runtime modules generated code imports: a changed runtime (an upgrade, an
    edit) changes every generated file, so neither our cache nor Numba's can serve stale code."""
    from .. import abi
    here = Path(__file__).parent
    h = hashlib.sha256()
    runtime = ("numba_runtime.py", "philox.py", "brownian.py", "numpy_runtime.py", "matfun.py")
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
