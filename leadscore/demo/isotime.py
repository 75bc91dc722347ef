"""Fast ISO-8601 formatting (millisecond precision, explicit UTC offset) and parsing back to UTC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

DAY_MS = 86_400_000
_W = 29  # len("2025-03-04T10:00:00.123+02:00")


def _digits(out: np.ndarray, col: int, values: np.ndarray, width: int) -> None:
    v = values.astype(np.int64)
    for i in range(width - 1, -1, -1):
        out[:, col + i] = 48 + (v % 10)
        v //= 10


def format_iso(utc_ms: np.ndarray, offset_min: np.ndarray) -> pa.StringArray:
    """'YYYY-MM-DDTHH:MM:SS.mmm+HH:MM' for each UTC epoch-millisecond value shown at its offset."""
    utc_ms = np.asarray(utc_ms, dtype=np.int64)
    off = np.asarray(offset_min, dtype=np.int64)
    n = utc_ms.size
    local = utc_ms + off * 60_000
    days = local // DAY_MS
    msday = local - days * DAY_MS
    d64 = days.astype("datetime64[D]")
    y = d64.astype("datetime64[Y]")
    m = d64.astype("datetime64[M]")
    year = y.astype(np.int64) + 1970
    month = (m - y.astype("datetime64[M]")).astype(np.int64) + 1
    dom = (d64 - m.astype("datetime64[D]")).astype(np.int64) + 1
    buf = np.empty((n, _W), dtype=np.uint8)
    _digits(buf, 0, year, 4)
    buf[:, 4] = ord("-")
    _digits(buf, 5, month, 2)
    buf[:, 7] = ord("-")
    _digits(buf, 8, dom, 2)
    buf[:, 10] = ord("T")
    _digits(buf, 11, msday // 3_600_000, 2)
    buf[:, 13] = ord(":")
    _digits(buf, 14, (msday // 60_000) % 60, 2)
    buf[:, 16] = ord(":")
    _digits(buf, 17, (msday // 1000) % 60, 2)
    buf[:, 19] = ord(".")
    _digits(buf, 20, msday % 1000, 3)
    buf[:, 23] = np.where(off < 0, ord("-"), ord("+"))
    aoff = np.abs(off)
    _digits(buf, 24, aoff // 60, 2)
    buf[:, 26] = ord(":")
    _digits(buf, 27, aoff % 60, 2)
    offsets = (np.arange(n + 1, dtype=np.int64) * _W).astype(np.int32 if n * _W < 2**31 else np.int64)
    typ = pa.string() if offsets.dtype == np.int32 else pa.large_string()
    arr = pa.Array.from_buffers(typ, n, [None, pa.py_buffer(offsets), pa.py_buffer(buf.reshape(-1))])
    return arr.cast(pa.string())


def parse_iso_utc_ms(values) -> np.ndarray:
    """Parse ISO-8601 strings with (possibly mixed) UTC offsets to UTC epoch milliseconds (int64)."""
    ts = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601", utc=True)
    return ts.dt.tz_localize(None).astype("datetime64[ms]").to_numpy().astype(np.int64)
