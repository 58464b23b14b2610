"""numba's `njit(cache=True)`, made to work wherever charrnn is installed (the n-gram counts and
queries, the CPU sampling kernel).

numba caches compiled kernels next to the source file. When the package folder is read-only
(a system-wide install, a container image) we point NUMBA_CACHE_DIR at charrnn's own cache
folder instead, before numba is imported; if no folder can be written at all, kernels are
still compiled, only not cached.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
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


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """A Ctrl-C during the block acts when it ends. Raised inside numba's own Python (loading a
    cached kernel, boxing what compiled code hands back), it could leave the call half-made: a
    Ctrl-C at the wrong moment of `ngram eval` crashed the process (SIGSEGV) instead of
    stopping it. A kernel itself never sees a signal, so a Ctrl-C waits little longer."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    if before is None:  # a handler set outside Python: Python's own is the nearest to it
        before = signal.default_int_handler
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
        if caught and callable(before):  # the handler it replaced (Python's: KeyboardInterrupt)
            before(signal.SIGINT, None)
        elif caught and before == signal.SIG_DFL:
            raise KeyboardInterrupt
carray = numba.carray


# Two threads that split one kernel's work meet at barriers (cpukernel.py): each publishes how
# far it has come with a release store and waits with acquire loads. Plain array reads would not
# do: the compiler may keep the value in a register and spin forever.

from numba.core import cgutils, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402


def _counters(array) -> bool:
    """Whether `array` is what the barriers count in: a 1-D int64 array (else no signature,
    so a misuse is a typing error, not wrong code)."""
    return isinstance(array, types.Array) and array.ndim == 1 and array.dtype == types.int64


def _element(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


@intrinsic
def load_acquire(typingctx, array, index):
    """array[index] (an int64 array), read as another thread last published it."""

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element(context, builder, sig.args[0], *args), "acquire", 8)

    if _counters(array) and isinstance(index, types.Integer):
        return types.int64(array, index), codegen
    return None


@intrinsic
def store_release(typingctx, array, index, value):
    """array[index] = value (int64), visible to another thread with everything written before."""

    def codegen(context, builder, sig, args):
        pointer = _element(context, builder, sig.args[0], args[0], args[1])
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, pointer, "release", 8)
        return context.get_dummy_value()

    if _counters(array) and isinstance(index, types.Integer) and isinstance(value, types.Integer):
        return types.void(array, index, value), codegen
    return None
