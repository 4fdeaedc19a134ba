"""Arrow arrays from Python lists without `pa.array`.

`pa.array(...)` asks whether its argument is a pandas object, which imports pandas on first use:
0.3-0.7 s of a stage on 2 cores, in every process that runs one (each Dagster step process, the
first filter of a benchmark run). Nothing else in a data stage needs pandas, so the two array kinds
the stages build from Python (keep masks, reason/detail strings) are assembled from buffers here.
Same arrays as `pa.array(values, type=...)` (tests/unit/test_perf_equivalence.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def _validity(present: np.ndarray) -> pa.Buffer | None:
    return None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))


def bool_array(flags: Sequence[bool]) -> pa.BooleanArray:
    n = len(flags)
    bits = np.packbits(np.fromiter(flags, dtype=np.bool_, count=n), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)])


def _variable_width(values: Sequence[bytes | None], small: pa.DataType, large: pa.DataType) -> pa.Array:
    values = values if isinstance(values, list) else list(values)
    n, validity = len(values), None
    if values.count(None):  # list.count, map(len) and join iterate in C: no per-item Python frames
        present = np.fromiter((v is not None for v in values), dtype=np.bool_, count=n)
        validity = _validity(present)
        values = [b"" if v is None else v for v in values]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=n), out=offsets[1:])
    data = pa.py_buffer(b"".join(values))
    if offsets[-1] < 2**31:
        return pa.Array.from_buffers(small, n, [validity, pa.py_buffer(offsets.astype(np.int32)), data])
    # over 2 GiB: Arrow's cast raises its own error (32-bit offsets)
    return pa.Array.from_buffers(large, n, [validity, pa.py_buffer(offsets), data]).cast(small)


def string_array(values: Sequence[str | None]) -> pa.StringArray:
    return _variable_width([None if v is None else v.encode("utf-8") for v in values], pa.string(), pa.large_string())


def binary_array(values: Sequence[bytes | None]) -> pa.BinaryArray:
    return _variable_width(values, pa.binary(), pa.large_binary())
