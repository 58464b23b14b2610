"""cpukernel.run_chunk's arguments as three tables — pointers, integers, floats — the form in which
its C entry (cpukernel.c_entry, machine code kept by machinecode.py) reads them:

    run_chunk(cell, table, w_ih, …, sync)
        array  ─▶ pointers[PTR[i]] = its data;  ints[AT[i]:AT[i] + ndim] = its shape
        int    ─▶ ints[AT[i]]      (bool: 0 / 1)
        float  ─▶ floats[AT[i]]
"""

from __future__ import annotations

import ctypes

import numpy as np

# run_chunk's parameters in order: an array's number of dimensions, or a scalar's table. Arrays
# are float32 but for INTEGER_ARRAYS (int64).
PARAMS = (("cell", "int"), ("table", 2), ("w_ih", 3), ("b_ih", 2), ("w_hh", 3), ("b_hh", 2),
          ("proj_w", 2), ("proj_b", 1), ("head_w", 2), ("head_b", 1), ("h", 2), ("c", 2),
          ("scores", 1), ("noise", 2), ("inv_temp", "float"), ("top_k", "int"),
          ("top_p", "float"), ("greedy", "int"), ("ids", 1), ("stats", 2), ("lane", "int"),
          ("lanes", "int"), ("spare", 2), ("projected", 1), ("work", 2), ("orders", 2),
          ("sync", 1))
INTEGER_ARRAYS = {"ids", "orders", "sync"}


def _layout() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(AT, PTR): where each parameter's value (a scalar) or shape (an array) starts in the ints
    or floats table, and which pointer is an array's (-1: a scalar)."""
    at, ptr, ints, floats, pointers = [], [], 0, 0, 0
    for _, kind in PARAMS:
        if kind == "float":
            at.append(floats)
            floats += 1
        else:
            at.append(ints)
            ints += 1 if kind == "int" else kind
        ptr.append(pointers if isinstance(kind, int) else -1)
        pointers += isinstance(kind, int)
    return tuple(at), tuple(ptr)


AT, PTR = _layout()


def pack(args: tuple) -> tuple:
    """(pointers, ints, floats) of run_chunk's arguments, as ctypes arrays. The C function reads
    each array as C-contiguous of its dtype (numba's dispatcher would compile another version
    for another: here that is refused)."""
    pointers, ints, floats = [], [], []
    for value, (name, kind) in zip(args, PARAMS, strict=True):
        if kind == "float":
            floats.append(float(value))
        elif kind == "int":
            ints.append(int(value))
        else:
            dtype = np.int64 if name in INTEGER_ARRAYS else np.float32
            if value.dtype != dtype or value.ndim != kind or not value.flags.c_contiguous:
                raise TypeError(f"run_chunk's {name} must be a C-contiguous {kind}-D {dtype}")
            pointers.append(value.ctypes.data)
            ints.extend(value.shape)
    return ((ctypes.c_void_p * len(pointers))(*pointers), (ctypes.c_int64 * len(ints))(*ints),
            (ctypes.c_double * len(floats))(*floats))
