"""The files of a data directory (Parquet or CSV) read into pandas or Arrow, and the column helpers loading
uses on them: Arrow dictionary codes, ids as strings, repeated pairs found on integer codes.

A Parquet table may also be a directory of part files (`events.parquet/` or `events/`, as Spark and
other engines write them): its `*.parquet` files, in name order, read as one table; names starting with
`_` or `.` (`_SUCCESS`, checksums) are skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from leadscore.features import schema as S
from leadscore.features.problems import DataError, Problem
from numba import njit


@overload
def find_table(data_dir: Path, table: str, required: Literal[True] = True) -> Path: ...
@overload
def find_table(data_dir: Path, table: str, required: bool) -> Path | None: ...
def find_table(data_dir: Path, table: str, required: bool = True) -> Path | None:
    """`table`.parquet (a file or a directory of part files), else `table`.csv, else a directory `table` of
    Parquet part files in `data_dir`; if none, a DataError (None if not `required`)."""
    for ext in ("parquet", "csv"):
        path = data_dir / f"{table}.{ext}"
        if path.exists():
            return path
    if (data_dir / table).is_dir() and part_files(data_dir / table):
        return data_dir / table
    if required:
        raise DataError(
            [
                Problem(
                    str(data_dir / f"{table}.parquet"),
                    None,
                    None,
                    f"missing: expected {table}.parquet or {table}.csv",
                )
            ]
        )
    return None


def is_parquet(path: Path) -> bool:
    """A Parquet file, or a directory of Parquet part files."""
    return path.suffix == ".parquet" or path.is_dir()


def part_files(path: Path) -> list[Path]:
    """The Parquet files of a table in read order: the file itself, or a directory's part files by name."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*.parquet") if p.is_file() and not p.name.startswith(("_", ".")))


def parquet_schema(path: Path) -> pa.Schema:
    files = part_files(path)
    return pq.read_schema(files[0]) if files else pa.schema([])


def read_frame(path: Path) -> pd.DataFrame:
    if path.is_dir():
        return pa.concat_tables([pq.read_table(p) for p in part_files(path)]).to_pandas()
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def read_events(path: Path) -> pa.Table:
    """The events file's columns as an Arrow table; Parquet string columns come dictionary-encoded."""
    if is_parquet(path):
        schema = parquet_schema(path)
        strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        wanted = [c for c in S.EVENT_COLUMNS if c in schema.names]
        parts = [
            pq.read_table(p, columns=wanted, read_dictionary=[c for c in strings if c in wanted])
            for p in part_files(path)
        ]
        return pa.concat_tables(parts) if len(parts) != 1 else parts[0]
    return pa.Table.from_pandas(read_frame(path), preserve_index=False)


def dictionary_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values as str objects, int32 code per row with -1 for missing) of an Arrow column.

    Values that are not strings are turned into strings as `as_str` does for pandas columns.
    """
    if not pa.types.is_dictionary(col.type):
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pa.chunked_array(
                [pa.array(as_str(pd.Series(col.to_pandas())).to_numpy(dtype=object), pa.string())]
            )
        col = pc.dictionary_encode(col)
    if col.num_chunks == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int32)
    col = col.unify_dictionaries()
    values = col.chunk(0).dictionary.cast(pa.string()).to_numpy(zero_copy_only=False)
    codes = np.concatenate(
        [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32) for c in col.chunks]
    )
    return values, codes


def as_str(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.StringDtype) and col.dtype.na_value is np.nan:
        return col  # already what the slow path below produces: strings, missing as NaN
    return col.astype(object).where(col.notna(), None).map(lambda v: v if v is None else str(v))


def exact_duplicates(
    lead: np.ndarray, type_code: np.ndarray, page_code: np.ndarray, ms: np.ndarray
) -> np.ndarray:
    """The loader's one repair, as a rule every path applies: True for each event that repeats an earlier
    one exactly (same lead, type, page and millisecond; the first of them is kept). `lead` any int code of
    the lead, `type_code` the position in `S.EVENT_TYPES`, `page_code` in `S.PAGE_KINDS` (-1: no page), `ms`
    milliseconds since the epoch (UTC); all four packed into two int64 keys."""
    key = lead.astype(np.int64) * 1024 + type_code.astype(np.int64) * 32 + (page_code.astype(np.int64) + 1)
    return repeats(key, ms.astype(np.int64))


@njit(cache=True)
def repeats(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """True where the pair (a[i], b[i]) already occurred at a smaller i (open-addressing hash set)."""
    n = a.shape[0]
    bits = 4
    while (1 << bits) < 2 * n:
        bits += 1
    mask = (1 << bits) - 1
    slots = np.full(1 << bits, -1, np.int64)
    seen = np.zeros(n, np.bool_)
    for i in range(n):
        h = (np.uint64(a[i]) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            np.uint64(b[i]) * np.uint64(0xC2B2AE3D27D4EB4F)
        )
        h ^= h >> np.uint64(31)
        j = np.int64(h & np.uint64(mask))
        while True:
            s = slots[j]
            if s < 0:
                slots[j] = i
                break
            if a[s] == a[i] and b[s] == b[i]:
                seen[i] = True
                break
            j = (j + 1) & mask
    return seen
