"""numba's `njit(cache=True)`, made to work wherever charrnn is installed (the n-gram counts and
queries, the CPU sampling kernel).

numba caches compiled kernels next to the source file. When the package folder is read-only
(a system-wide install, a container image) we point NUMBA_CACHE_DIR at charrnn's own cache
folder instead, before numba is imported; if no folder can be written at all, kernels are
still compiled, only not cached.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def configure_cache(package_dir: Path = PACKAGE_DIR) -> str | None:
    """Choose NUMBA_CACHE_DIR when the package folder is not writable; return what is set."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    pycache = package_dir / "__pycache__"
    target = pycache if pycache.is_dir() else package_dir
    if os.access(target, os.W_OK):
        return None
    from charrnn.fsutil import cache_dir

    folder = cache_dir() / "numba"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    return str(folder)


configure_cache()

import numba  # noqa: E402  (must come after the cache folder is chosen)


def njit(*args, **kwargs):
    """`numba.njit(cache=True, ...)`, falling back to an uncached kernel if caching fails."""

    def wrap(func):
        try:
            return numba.njit(cache=True, **kwargs)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, **kwargs)(func)

    if args and callable(args[0]):
        return wrap(args[0])
    return wrap


prange = numba.prange
