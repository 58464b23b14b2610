"""The CPU sampling kernel's machine code, kept so that a process runs it without importing numba.

    first use (this machine, these versions):
        numba compiles cpukernel.c_entry ─▶ LLVM IR ─▶ llvmlite: object code ─▶ <cache>/kernels/
    every use:
        llvmlite loads the object (~0.2 s) ─▶ a C function run(pointers, ints, floats)
                                            ─▶ Kernel(*run_chunk's arguments) packs the tables

Why: importing numba and loading its cached run_chunk took 0.85–1.0 s of every long `charrnn
sample` (2-core AMD EPYC; numba's own cache loads every registry of its compiler first), ~a third
of 20,000 tokens' time; llvmlite (numba's own LLVM binding, installed with it) loads the same code
in ~0.2 s. The code is numba's, compiled from the same IR: the same maths as cpukernel.run_chunk
called through numba (tested token for token). run_chunk allocates nothing and raises nothing, so
numba's runtime functions, which its IR names only on error paths, become traps here (a call
would be a bug: the process stops, as on a bad pointer).

The file is named by what made it: the kernel's sources, numba's and llvmlite's versions, the CPU
(name and features: code for this CPU may not run on another) — a change of any makes a new one.
Written atomically; one that does not load is made again; where none can be made, numba's
dispatcher runs the kernel as before (cpustream falls back to NumPy only where numba cannot).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import threading
from importlib import metadata
from pathlib import Path

from charrnn.lm import kernelargs

TRAPPED = re.compile(r'^declare (.*?@"?(?:NRT_|numba_)[\w.$]*"?\(.*\).*)$', re.M)
SOURCES = ("cpukernel.py", "kernelargs.py", "machinecode.py", "../jit.py")


class Kernel:
    """cpukernel.run_chunk's signature over the loaded C function (a ctypes call, which lets go
    of the GIL, as the numba dispatcher's nogil does)."""

    def __init__(self, function) -> None:
        self.function = function

    def __call__(self, *args) -> int:
        return self.function(*kernelargs.pack(args))


_lock = threading.Lock()
_loaded: dict[str, object] = {}  # "kernel": the Kernel, "engine": what keeps its code alive


def kernel() -> Kernel:
    """The kernel from its machine code (made first where there is none); raises where it
    cannot be had (cpustream then runs numba's dispatcher)."""
    with _lock:
        if "kernel" not in _loaded:
            _loaded["kernel"] = _load()
        return _loaded["kernel"]


def _load() -> Kernel:
    llvm = _llvm()
    folder = _folder()
    name = _key(llvm)
    meta_path, object_path = folder / f"{name}.json", folder / f"{name}.o"
    try:
        meta = json.loads(meta_path.read_text())
        code = object_path.read_bytes()
        if hashlib.sha256(code).hexdigest() != meta["sha256"]:
            raise ValueError("the object is not the one written")
    except (OSError, ValueError, KeyError, TypeError):
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):  # made here, it could not be kept: numba's way then
            raise PermissionError(f"cannot write {folder}") from None
        meta, code = _make(llvm, meta_path, object_path)
    return Kernel(_link(llvm, code, meta))


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
    for source in SOURCES:
        digest.update((here / source).read_bytes())
    for part in (metadata.version("numba"), llvmlite.__version__, llvm.get_process_triple(),
                 llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()):
        digest.update(part.encode() + b"\0")
    return f"run_chunk-{digest.hexdigest()[:20]}"


def _target_machine(llvm):
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), opt=3,
                                        features=llvm.get_host_cpu_features().flatten(),
                                        codemodel="jitdefault")


def _make(llvm, meta_path: Path, object_path: Path) -> tuple[dict, bytes]:
    """Compile the entry with numba, trap its runtime calls, emit and save the object code."""
    from charrnn.fsutil import atomic_file
    from charrnn.lm import cpukernel

    entry = cpukernel.c_entry()
    module = llvm.parse_assembly(trap_runtime(entry.inspect_llvm()))
    module.verify()
    code = _target_machine(llvm).emit_object(module)
    meta = {"symbol": entry.native_name, "sha256": hashlib.sha256(code).hexdigest()}
    for path, data in ((object_path, code), (meta_path, json.dumps(meta).encode())):
        with atomic_file(path) as tmp:
            tmp.write_bytes(data)
    return meta, code


def trap_runtime(ir: str) -> str:
    """The module with each of numba's runtime functions (NRT_*, numba_*: on error paths only)
    defined as a trap, so that the object needs nothing from numba to load."""
    defined = TRAPPED.sub(r"define internal \1 {\n  call void @llvm.trap()\n  unreachable\n}", ir)
    if "@llvm.trap()" not in ir:
        defined += "\ndeclare void @llvm.trap()\n"
    return defined


def _link(llvm, code: bytes, meta: dict):
    """The C function in `code`, linked into this process by LLVM's MCJIT (kept alive here)."""
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine(llvm))
    engine.add_object_file(llvm.ObjectFileRef.from_data(code))
    engine.finalize_object()
    address = engine.get_function_address(meta["symbol"])
    if not address:
        raise RuntimeError(f"{meta['symbol']} is not in the kernel's object code")
    _loaded["engine"] = engine
    prototype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_void_p)
    return prototype(address)
