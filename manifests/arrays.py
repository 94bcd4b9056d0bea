"""Arrow arrays from plain Python values, without pyarrow's pandas probe.

`pyarrow.array` first asks whether its input is a pandas object, and asking imports pandas
(~0.45 s here, most of a stage's start-up). The stages that run without pandas (`curate scan`,
`repair`, `score`, `dedupe`) build their columns with `build`: for the flat types the schema
declares (booleans, integers, floats, strings) from numpy buffers through
`pyarrow.Array.from_buffers`; any other type, or values that are not plainly of the type (a float
in an integer column, say), go to `pyarrow.array`, which then decides (and may import pandas).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
          pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
          pa.float32(): np.float32, pa.float64(): np.float64}


def _bits(mask: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(mask, bitorder="little"))


def _all(values: list, kinds: tuple, bools: bool = False) -> bool:
    """Every value None or of `kinds` (booleans only where `bools`: they are ints to Python)."""
    for v in values:
        if v is None:
            continue
        if isinstance(v, (bool, np.bool_)):
            if not bools:
                return False
        elif not isinstance(v, kinds):
            return False
    return True


def build(values: list, type: pa.DataType | None) -> pa.Array:
    """`pyarrow.array(values, type=type)` (None is a null) for a declared flat type, pandas-free.
    In a float column NaN is a null too, as in a manifest written from pandas."""
    values = list(values)
    n = len(values)
    if type is None or n == 0:
        return pa.array(values, type=type)
    if pa.types.is_floating(type):
        values = [None if isinstance(v, float) and v != v else v for v in values]
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    nulls = n - int(valid.sum())
    validity = None if nulls == 0 else _bits(valid)
    if pa.types.is_boolean(type) and _all(values, (), bools=True):
        data = np.fromiter((v is not None and bool(v) for v in values), dtype=bool, count=n)
        out = pa.Array.from_buffers(type, n, [validity, _bits(data)], null_count=nulls)
    elif (pa.types.is_integer(type) and _all(values, (int, np.integer))) or \
            (pa.types.is_floating(type) and type in _NUMPY and _all(values, (int, float, np.integer, np.floating))):
        dtype = _NUMPY[type]
        try:
            data = np.array([0 if v is None else v for v in values], dtype=dtype)
        except OverflowError:
            return pa.array(values, type=type)     # out of range: pyarrow says so
        out = pa.Array.from_buffers(type, n, [validity, pa.py_buffer(data)], null_count=nulls)
    elif pa.types.is_string(type) and _all(values, (str,)):
        enc = [b"" if v is None else v.encode("utf-8") for v in values]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(b) for b in enc], out=offsets[1:])
        if offsets[-1] >= 2 ** 31:
            return pa.array(values, type=type)
        out = pa.Array.from_buffers(type, n, [validity, pa.py_buffer(offsets.astype(np.int32)),
                                              pa.py_buffer(b"".join(enc))], null_count=nulls)
    else:
        return pa.array(values, type=type)
    out.validate(full=True)
    return out
