"""The CPU sampling kernel's machine code, kept so that a process runs it without importing numba.

    first use (this machine, these versions):
        numba compiles cpukernel.c_entry ─▶ LLVM IR ─▶ llvmlite: object code ─▶ <cache>/kernels/
    every use:
        llvmlite links the object (0.1–0.15 s) ─▶ a C function f(pointers, ints, floats)
                                                ─▶ Kernel(*run_chunk's arguments) packs them

Why: importing numba and loading its cached run_chunk took 0.85–1.0 s of every long `charrnn
sample` (2-core AMD EPYC; numba's own cache loads every registry of its compiler first), ~a third
of 20,000 tokens' time; llvmlite (numba's own LLVM binding, installed with it) links the same
code in a tenth of that. The code is numba's, from the same IR: it writes the bits
cpukernel.run_chunk writes through numba (tested). run_chunk allocates nothing and raises
nothing, so numba's runtime functions, which its IR names only on error paths, become traps here
(a call would be a bug: the process stops, as on a bad pointer). Any other function the code
declares must be in this process: checked before the first call (numba's vector maths library,
where numba's code uses one, is loaded as numba's import does).

The files (<key>.o and <key>.json) are named by what made them: the kernel's sources, Python's,
numba's and llvmlite's versions, NUMBA_* settings, the CPU (name and features: code for this CPU
may not run on another). Written atomically; a file that is not the one written is made again;
where the code cannot be made (<key>.failed says why, so it is not tried in every process;
removing it tries again) or linked, numba's dispatcher runs the kernel as before (and NumPy
where numba cannot); where it cannot be written, this process runs it all the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import json
import os
import re
import sys
import threading
from pathlib import Path

from charrnn.errors import UserError
from charrnn.lm import kernelargs

TRAPPED = re.compile(r'^declare (.*?@"?(?:NRT_|numba_)[\w.$]*"?\(.*\).*)$', re.M)
SOURCES = ("cpukernel.py", "kernelargs.py", "machinecode.py", "cpulanes.py", "cpustep.py",
           "../jit.py")  # everything compiled into the code (constants included)
RUNTIME_ONLY = {"NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER"}  # not in the code
SVML = {"linux": "libsvml.so", "darwin": "libsvml.dylib", "win32": "svml_dispmd"}


class Kernel:
    """cpukernel.run_chunk's signature over the linked C function (a ctypes call, which lets go
    of the GIL, as the numba dispatcher's nogil does); `engine` holds the code."""

    def __init__(self, function, engine) -> None:
        self.function, self.engine = function, engine

    def __call__(self, *args) -> int:
        return self.function(*kernelargs.pack(args))


_lock = threading.Lock()
_kernel: Kernel | None = None


def kernel() -> Kernel:
    """The kernel from its machine code (made first where there is none); raises where it
    cannot be had (cpustream then runs numba's dispatcher)."""
    global _kernel
    with _lock:
        if _kernel is None:
            _kernel = _load()
        return _kernel


def _load() -> Kernel:
    llvm = _llvm()
    key = _key(llvm)
    paths = {kind: _folder() / f"{key}.{kind}" for kind in ("o", "json", "failed")}
    try:
        meta = json.loads(paths["json"].read_text())
        code = paths["o"].read_bytes()
        if hashlib.sha256(code).hexdigest() != meta["sha256"]:
            raise ValueError("the object is not the one written")
    except (OSError, ValueError, KeyError, TypeError):
        if paths["failed"].exists():  # (removing it tries again)
            raise RuntimeError(f"making it failed before ({paths['failed']}: "
                               f"{paths['failed'].read_text(errors='replace')[:160]})") from None
        meta, code = _make_kept(llvm, paths)
    return _link(llvm, code, meta)


def _llvm():
    import llvmlite.binding as llvm

    try:  # needed before llvmlite 0.45; later ones refuse it
        llvm.initialize()
    except RuntimeError:
        pass
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def _folder() -> Path:
    from charrnn.fsutil import cache_dir

    return cache_dir() / "kernels"


def _key(llvm) -> str:
    """run_chunk-<digest> of everything the machine code depends on."""
    import llvmlite

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in (*(here / name for name in SOURCES), _numba_version_file()):
        digest.update(source.read_bytes())
    settings = sorted(f"{k}={v}" for k, v in os.environ.items()
                      if k.startswith("NUMBA_") and k not in RUNTIME_ONLY)
    for part in (sys.version, llvmlite.__version__, llvm.get_process_triple(),
                 llvm.get_host_cpu_name(), _features(llvm), *settings):
        digest.update(part.encode() + b"\0")
    return f"run_chunk-{digest.hexdigest()[:20]}"


def _numba_version_file() -> Path:
    """numba/_version.py, found without importing numba (importlib.metadata costs 0.1 s)."""
    spec = importlib.util.find_spec("numba")
    if spec is None or spec.origin is None:
        raise RuntimeError("numba is not installed")
    return Path(spec.origin).parent / "_version.py"


def _features(llvm) -> str:
    try:
        return llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot tell on this platform: its defaults for the CPU, as numba
        return ""


def _target_machine(llvm):
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), opt=3,
                                        features=_features(llvm), codemodel="jitdefault")


def _make_kept(llvm, paths: dict[str, Path]) -> tuple[dict, bytes]:
    """_make, its files written; a failure to make is written down, not tried again."""
    from charrnn.fsutil import atomic_file

    folder = paths["o"].parent
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):  # made here, it could not be kept: numba's way then
        raise PermissionError(f"cannot write {folder}")
    with contextlib.suppress(OSError):  # seconds of silence otherwise, before the first token
        print("charrnn: compiling the CPU sampling kernel, once for this machine (5-25 s)",
              file=sys.stderr, flush=True)
    try:
        meta, code = _make(llvm)
    except Exception as exc:
        with contextlib.suppress(OSError):
            paths["failed"].write_text(f"{type(exc).__name__}: {exc}")
        raise
    try:
        for path, data in ((paths["o"], code), (paths["json"], json.dumps(meta).encode())):
            with atomic_file(path) as tmp:
                tmp.write_bytes(data)
    except UserError as exc:  # a full disk, say: this process runs it all the same
        with contextlib.suppress(OSError):
            print(f"charrnn: {exc}: the kernel will be compiled again next time", file=sys.stderr)
    return meta, code


def _make(llvm) -> tuple[dict, bytes]:
    """Compile the entry with numba, trap its runtime calls, emit the object code; the meta
    names the entry, the object's digest and the functions and data it needs from the process."""
    from charrnn.lm import cpukernel

    entry = cpukernel.c_entry()
    module = llvm.parse_assembly(trap_runtime(entry.inspect_llvm()))
    module.verify()
    code = _target_machine(llvm).emit_object(module)
    externals = sorted({f.name for f in module.functions
                        if f.is_declaration and not f.name.startswith("llvm.")}
                       | {g.name for g in module.global_variables if g.is_declaration})
    return {"symbol": entry.native_name, "sha256": hashlib.sha256(code).hexdigest(),
            "externals": externals}, code


def trap_runtime(ir: str) -> str:
    """The module with each of numba's runtime functions (NRT_*, numba_*: on error paths only)
    defined as a trap, so that the object needs nothing from numba to load."""
    defined = TRAPPED.sub(r"define internal \1 {\n  call void @llvm.trap()\n  unreachable\n}", ir)
    if "@llvm.trap()" not in ir:
        defined += "\ndeclare void @llvm.trap()\n"
    return defined


def _link(llvm, code: bytes, meta: dict) -> Kernel:
    """The C function in `code`, linked into this process by LLVM's MCJIT. A function the code
    declares that this process lacks would be a jump to address 0: refused first (the C
    library's, which LLVM adds for exp or memcpy, are in every Python process)."""
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine(llvm))
    if any(name.startswith("__svml_") for name in meta["externals"]):
        with contextlib.suppress(Exception):  # numba's import loads it: so does its code's use
            llvm.load_library_permanently(SVML.get(sys.platform, "libsvml.so"))
    missing = [name for name in meta["externals"] if not llvm.address_of_symbol(name)]
    if missing:
        raise RuntimeError(f"this process lacks {', '.join(missing[:3])}, which the code calls")
    engine.add_object_file(llvm.ObjectFileRef.from_data(code))
    engine.finalize_object()
    address = engine.get_function_address(meta["symbol"])
    if not address:
        raise RuntimeError(f"{meta['symbol']} is not in the kernel's object code")
    prototype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_void_p)
    return Kernel(prototype(address), engine)
