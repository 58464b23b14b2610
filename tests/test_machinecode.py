"""The CPU sampling kernel's kept machine code (charrnn/lm/machinecode.py): the same bits as numba's
dispatcher for every cell and option (two lanes, a NaN row), a process that finds it never
imports numba, a broken file is made again, a failed make is not tried again, the file is named
by the CPU, numba's runtime calls become traps, a function the process lacks is refused before
a call, and without the code numba runs the kernel (one line says so)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from charrnn.lm import cpulanes, cpustep, cpustream, kernelargs, machinecode
from charrnn.lm.config import ModelConfig
from helpers import modules_loaded_by

SHAPES = [("lstm", 0, True), ("gru", 0, False), ("rnn", 0, True), ("lstm", 12, True),
          ("gru", 0, True, 1, 9)]  # one layer, a size that is no multiple of _affine's 4 rows
OPTIONS = [(1.0, 0, 0.0, False), (1.4, 5, 0.0, False), (0.8, 0, 0.7, False),
           (1.0, 0, 0.0, True)]  # (1/T, top-k, top-p, greedy)


def weights(cell: str, emb: int, tied: bool, layers: int = 2, hidden: int = 24,
            vocab: int = 30) -> cpustream.Weights:
    config = ModelConfig(vocab, cell, layers=layers, hidden=hidden, emb=emb, tie_weights=tied)
    rng = np.random.default_rng(3)
    shapes, _ = cpustream.expected_shapes(config)
    return cpustream.Weights(config, {name: rng.standard_normal(shape).astype(np.float32) * 0.3
                                      for name, shape in shapes.items()})


def arguments(w: cpustream.Weights, option: tuple, steps: int = 40) -> tuple:
    """run_chunk's arguments for one lane's chunk of `steps` tokens from a random state."""
    inv_temp, top_k, top_p, greedy = option
    cfg, vocab = w.config, w.head_b.shape[0]
    rng = np.random.default_rng(9)
    h = rng.standard_normal((cfg.layers, cfg.hidden)).astype(np.float32)
    c, scores = h.copy() * 0.5, rng.standard_normal(vocab).astype(np.float32)
    noise = np.empty((steps, 0), np.float32) if greedy else \
        rng.gumbel(size=(steps, vocab)).astype(np.float32)
    ids, stats = np.empty(steps, np.int64), np.zeros((steps, cpustep.stats_width(vocab)),
                                                     np.float32)
    return (*w.kernel_args(), h, c, scores, noise, np.float32(inv_temp), top_k, top_p, greedy,
            ids, stats, 0, 1, *cpustream.lane_scratch(w), np.zeros(32, np.int64))


def chunk(run_chunk, w: cpustream.Weights, option: tuple, lanes: int = 1,
          steps: int = 40) -> list[np.ndarray]:
    """Every array a chunk of `run_chunk` on `lanes` lanes writes: ids, stats, h, c, scores."""
    args = arguments(w, option, steps)
    cpulanes.run(run_chunk, args[:20], lanes, args[22:-1])
    h, c, scores, _, _, _, _, _, ids, stats = args[10:20]
    return [ids, stats, h, c, scores]


def same_bits(w: cpustream.Weights, option: tuple, lanes: int = 1) -> bool:
    from charrnn.lm import cpukernel

    kept, numba_s = (chunk(k, w, option, lanes) for k in (machinecode.kernel(),
                                                          cpukernel.run_chunk))
    return all(a.tobytes() == b.tobytes() for a, b in zip(kept, numba_s, strict=True))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("option", OPTIONS, ids=["plain", "temp-topk", "topp", "greedy"])
def test_the_kept_machine_code_writes_the_bits_numbas_dispatcher_writes(shape, option) -> None:
    assert same_bits(weights(*shape), option)


@pytest.mark.parametrize("shape", SHAPES[::2], ids=lambda s: "-".join(map(str, s)))
def test_two_lanes_of_the_kept_code_write_the_bits_of_two_of_numbas(shape) -> None:
    assert same_bits(weights(*shape), OPTIONS[1], lanes=2)


def test_a_row_without_a_distribution_ends_the_chunk_as_in_numbas() -> None:
    w = weights("lstm", 0, True)
    w.head_b[3] = np.nan  # every row after the first
    ids = chunk(machinecode.kernel(), w, OPTIONS[0])[0]
    assert ids[0] >= 0 and (ids[1:] == -1).all() and same_bits(w, OPTIONS[0])


def test_a_process_that_finds_the_machine_code_never_imports_numba(tiny_run) -> None:
    machinecode.kernel()  # made here if this session has not yet
    code = (f"import sys\nfrom charrnn.cli import main\nsys.argv = ['charrnn', 'sample', "
            f"{str(tiny_run)!r}, '--length', '{cpustream.KERNEL_PAYS + 50}', '--plain', "
            f"'--device', 'cpu', '--seed', '3']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            f"from charrnn.lm import cpustream\nprint('kernel', cpustream._said)\n")
    out, (numba, torch, llvmlite) = modules_loaded_by(code, "numba", "torch", "llvmlite")
    assert "kernel set()" in out  # nothing said: the kernel ran
    assert llvmlite and not numba and not torch


def test_a_broken_kept_object_is_made_again(monkeypatch) -> None:
    machinecode.kernel()
    llvm = machinecode._llvm()
    path = machinecode._folder() / f"{machinecode._key(llvm)}.o"
    path.write_bytes(b"\x7fELF not an object")
    monkeypatch.setattr(machinecode, "_kernel", None)
    assert same_bits(weights("gru", 0, False), OPTIONS[1])
    meta = json.loads(path.with_suffix(".json").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]


def test_a_make_that_failed_is_not_tried_in_every_process(monkeypatch, tmp_path,
                                                            capsys) -> None:
    def broken(llvm):
        raise ValueError("this LLVM reads no such IR")

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))
    monkeypatch.setattr(machinecode, "_make", broken)
    with pytest.raises(ValueError, match="no such IR"):
        machinecode._load()
    assert "compiling the CPU sampling kernel, once" in capsys.readouterr().err  # not silent
    monkeypatch.setattr(machinecode, "_make", lambda llvm: pytest.fail("made again"))
    with pytest.raises(RuntimeError, match="making it failed before .*no such IR"):
        machinecode._load()


def test_a_function_this_process_lacks_is_refused_before_any_call() -> None:
    """(numba's vector maths library, say, which only numba's import loads): a call would jump
    to address 0."""
    llvm = machinecode._llvm()
    meta, code = machinecode._make(llvm)
    with pytest.raises(RuntimeError, match="lacks charrnn_no_such_function"):
        machinecode._link(llvm, code, {**meta, "externals": ["charrnn_no_such_function"]})
    assert machinecode._link(llvm, code, meta)


def test_the_file_is_named_by_the_cpu_it_was_made_for(monkeypatch) -> None:
    llvm = machinecode._llvm()
    here = machinecode._key(llvm)
    monkeypatch.setattr(llvm, "get_host_cpu_name", lambda: "another-cpu")
    assert machinecode._key(llvm) != here and here.startswith("run_chunk-")


def test_numbas_runtime_functions_become_traps_and_the_rest_stays() -> None:
    llvm = machinecode._llvm()
    ir = ("declare i32 @numba_gil_ensure() local_unnamed_addr\n"  # no pointers: any LLVM reads it
          "declare void @NRT_decref(i64)\n"
          "declare i64 @PyUnicode_FromString(i64)\n"
          "define i32 @f(i64 %s) {\n  %a = call i32 @numba_gil_ensure()\n"
          "  call void @NRT_decref(i64 %s)\n  %u = call i64 @PyUnicode_FromString(i64 %s)\n"
          "  ret i32 %a\n}\n")
    module = llvm.parse_assembly(machinecode.trap_runtime(ir))
    module.verify()
    declared = {f.name for f in module.functions if f.is_declaration}
    assert declared == {"PyUnicode_FromString", "llvm.trap"}


def test_without_the_machine_code_numba_runs_the_kernel_and_one_line_says_so(
        monkeypatch, capsys) -> None:
    from charrnn.lm import cpukernel

    def refuse():
        raise RuntimeError("no object here")

    monkeypatch.setattr(machinecode, "kernel", refuse)
    monkeypatch.setattr(cpustream, "_said", set())
    w = weights("lstm", 0, True)
    for _ in range(2):
        run_chunk, _, _ = cpustream._load_kernel(w, False)
        assert run_chunk is cpukernel.run_chunk
    err = capsys.readouterr().err
    assert err.count("kept machine code is off (RuntimeError: no object here)") == 1


def test_an_array_of_another_dtype_is_refused_not_misread() -> None:
    """numba's dispatcher would compile a float64 version; the kept code reads float32."""
    w = weights("lstm", 0, True)
    args = list(arguments(w, OPTIONS[0]))
    args[1] = args[1].astype(np.float64)  # the layer-0 table
    with pytest.raises(TypeError, match="table must be a C-contiguous 2-D"):
        kernelargs.pack(tuple(args))


def test_the_kernel_calls_numbas_runtime_only_where_it_raises_or_frees() -> None:
    """An allocation (a slice copy, a NumPy reduction) on run_chunk's normal path would reach a
    trap in the kept code: the entry's IR names only the error paths' and reference counts'
    runtime functions (those of a carray, whose meminfo is null, do nothing)."""
    import re

    from charrnn.lm import cpukernel

    ir = cpukernel.c_entry().inspect_llvm()
    called = set(re.findall(r'call [^@]*@"?((?:NRT|numba)_\w+)', ir))
    assert called <= {"NRT_incref", "NRT_decref", "NRT_MemInfo_call_dtor", "NRT_Free",
                      "numba_gil_ensure", "numba_gil_release", "numba_do_raise", "numba_unpickle",
                      "numba_runtime_build_excinfo_struct"}, called
