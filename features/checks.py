"""The checks loading makes on the columns it reads: timestamps (ISO-8601 with any offset, or typed; in
[2000-01-01, 2100-01-01)), allowed values, required columns, known leads. Each finding is a `Problem` with
file, row, column and reason; at most MAX_PROBLEMS_SHOWN + 1 are listed per check."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from leadscore.features import schema as S
from leadscore.features.problems import MAX_PROBLEMS_SHOWN, Problem

MIN_TIME = pd.Timestamp("2000-01-01", tz="UTC")
MAX_TIME = pd.Timestamp("2100-01-01", tz="UTC")


def parse_timestamps(values: pd.Series, file: str, column: str, problems: list[Problem]) -> pd.Series:
    """UTC timestamps at millisecond precision; unparseable or out-of-range values become problems."""
    if isinstance(values, pa.ChunkedArray):
        return _parse_arrow_timestamps(values, file, column, problems)
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        ts = ts.astype("datetime64[ms, UTC]")
    else:
        raw = values.astype("string")
        try:
            # arrow-backed strings go to arrow without a Python object per value
            arr = pc.cast(
                pa.array(raw)
                if raw.dtype.storage == "pyarrow"
                else pa.array(raw.to_numpy(dtype=object, na_value=None), pa.string()),
                pa.timestamp("ms", tz="UTC"),
            )
            ts = pd.Series(arr.to_pandas(), index=values.index).astype("datetime64[ms, UTC]")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ts = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce").astype(
                "datetime64[ms, UTC]"
            )
    _timestamp_problems(ts, lambda i: values.iloc[i], file, column, problems)
    return ts


def _parse_arrow_timestamps(
    col: pa.ChunkedArray, file: str, column: str, problems: list[Problem]
) -> pd.Series:
    """`parse_timestamps` for an Arrow column: strings are cast by Arrow, typed timestamps converted."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if (
        pa.types.is_timestamp(col.type)
        or pa.types.is_date(col.type)
        or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
    ):
        return parse_timestamps(pd.Series(col.to_pandas()), file, column, problems)
    try:
        ts = pd.Series(pc.cast(col, pa.timestamp("ms", tz="UTC")).to_pandas()).astype("datetime64[ms, UTC]")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. an unusual format: pandas' parser decides
        return parse_timestamps(pd.Series(col.to_pandas()), file, column, problems)
    _timestamp_problems(ts, lambda i: col[i].as_py(), file, column, problems)
    return ts


def _timestamp_problems(
    ts: pd.Series, shown: Callable[[int], object], file: str, column: str, problems: list[Problem]
) -> None:
    """A problem for each row whose parsed timestamp `ts` is missing or out of range (at most
    MAX_PROBLEMS_SHOWN + 1), quoting `shown(row)`, the value as read."""
    bad = ts.isna() | (ts < MIN_TIME) | (ts >= MAX_TIME)
    for i in np.flatnonzero(bad.to_numpy())[: MAX_PROBLEMS_SHOWN + 1]:
        value = shown(int(i))
        reason = (
            "missing timestamp"
            if value is None or pd.isna(value)
            else (
                f"not an ISO-8601 timestamp: {str(value)[:40]!r}"
                if pd.isna(ts.iloc[i])
                else f"timestamp {str(value)[:40]!r} outside 2000-01-01 .. 2100-01-01"
            )
        )
        problems.append(Problem(file, int(i) + 1, column, reason))


def check_allowed_codes(
    values: np.ndarray,
    codes: np.ndarray,
    allowed: Sequence[str],
    column: str,
    file: str,
    problems: list[Problem],
    nullable: bool = False,
) -> np.ndarray:
    """`check_allowed` on a dictionary column; returns each row's position in `allowed` (-1 if missing)."""
    position = {v: k for k, v in enumerate(allowed)}
    to_allowed = np.array([position.get(v, -2) for v in values] + [-1], dtype=np.int8)  # [-1]: missing
    out: np.ndarray = to_allowed[codes]
    bad = (out == -2) | ((out == -1) & (not nullable))
    for i in np.flatnonzero(bad)[: MAX_PROBLEMS_SHOWN + 1]:
        v = values[codes[i]] if codes[i] >= 0 else None
        reason = "missing value" if v is None else f"{str(v)[:40]!r} is not one of {', '.join(allowed)}"
        problems.append(Problem(file, int(i) + 1, column, reason))
    return out


def check_allowed(
    df: pd.DataFrame,
    column: str,
    allowed: Sequence[str],
    file: str,
    problems: list[Problem],
    nullable: bool = False,
) -> None:
    col = df[column]
    bad = ~col.isin(list(allowed)) & ~(col.isna() if nullable else False)
    for i in np.flatnonzero(bad.to_numpy())[: MAX_PROBLEMS_SHOWN + 1]:
        v = col.iloc[i]
        reason = "missing value" if pd.isna(v) else f"{str(v)[:40]!r} is not one of {', '.join(allowed)}"
        problems.append(Problem(file, int(i) + 1, column, reason))


def check_columns(
    columns: Collection[object], needed: Sequence[str], file: str, problems: list[Problem]
) -> bool:
    missing = [c for c in needed if c not in columns]
    for c in missing:
        problems.append(Problem(file, None, c, "required column is missing"))
    return not missing


def check_known_leads(df: pd.DataFrame, known: pd.Index, file: str, problems: list[Problem]) -> None:
    ids = df[S.LEAD_ID]
    ids = (
        pa.array(ids.to_numpy(dtype=object, na_value=None), pa.string())
        if ids.dtype == object
        else pa.array(ids)
    )
    # Arrow's hash lookup: pandas' isin on arrow strings builds a Python list of the known ids
    unknown = ~pc.is_in(ids, value_set=pa.array(known.to_numpy(dtype=object), pa.string())).to_numpy(
        zero_copy_only=False
    )
    for i in np.flatnonzero(unknown)[: MAX_PROBLEMS_SHOWN + 1]:
        problems.append(
            Problem(file, int(i) + 1, S.LEAD_ID, f"lead {df[S.LEAD_ID].iloc[i]!r} is not in leads")
        )
