"""Read and validate a dataset directory: leads, events and outcomes in the canonical data model.

Files may be Parquet or CSV (`leads.parquet` or `leads.csv`, ...). Timestamps may be ISO-8601 strings with
any UTC offset (normalised to UTC; a string without an offset is taken as UTC) or typed timestamps. Every
problem is reported with file, row, column and reason, and loading fails rather than dropping rows. The one
repair made is removing exact duplicate events, which real exports contain; it is counted in the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.features import schema as S

MIN_TIME = pd.Timestamp("2000-01-01", tz="UTC")
MAX_TIME = pd.Timestamp("2100-01-01", tz="UTC")
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    row: int | None  # 1-based data row (header excluded), None for a whole-file problem
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        return f"{where}, column {self.column!r}: {self.reason}" if self.column else f"{where}: {self.reason}"


class DataError(ValueError):
    """The data cannot be used as it is; `problems` says where and why."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        super().__init__(f"{len(problems)} problem(s) in the data:\n{shown}{more}")


@dataclass(frozen=True)
class Dataset:
    leads: pd.DataFrame  # lead_id, created_at (UTC), attributes, custom columns
    events: pd.DataFrame  # lead_id, type, timestamp (UTC), page
    outcomes: pd.DataFrame  # lead_id, outcome, at (UTC), reason
    snapshot_at: pd.Timestamp  # the moment the export was taken: nothing after it is known
    notes: tuple[str, ...] = field(default=())  # repairs made while loading, for the log

    @property
    def custom_columns(self) -> list[str]:
        return [c for c in self.leads.columns if c not in S.LEAD_COLUMNS]


def _find(data_dir: Path, table: str, required: bool = True) -> Path | None:
    for ext in ("parquet", "csv"):
        path = data_dir / f"{table}.{ext}"
        if path.exists():
            return path
    if required:
        raise DataError([Problem(str(data_dir / f"{table}.parquet"), None, None,
                                 f"missing: expected {table}.parquet or {table}.csv")])
    return None


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def parse_timestamps(values: pd.Series, file: str, column: str, problems: list[Problem]) -> pd.Series:
    """UTC timestamps at millisecond precision; unparseable or out-of-range values become problems."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        ts = ts.astype("datetime64[ms, UTC]")
    else:
        raw = values.astype("string")
        try:
            # arrow-backed strings go to arrow without a Python object per value
            arr = pc.cast(pa.array(raw) if raw.dtype.storage == "pyarrow" else
                          pa.array(raw.to_numpy(dtype=object, na_value=None), pa.string()),
                          pa.timestamp("ms", tz="UTC"))
            ts = pd.Series(arr.to_pandas(), index=values.index).astype("datetime64[ms, UTC]")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ts = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce").astype("datetime64[ms, UTC]")
    bad = ts.isna() | (ts < MIN_TIME) | (ts >= MAX_TIME)
    for i in np.flatnonzero(bad.to_numpy())[: MAX_PROBLEMS_SHOWN + 1]:
        shown = values.iloc[i]
        reason = "missing timestamp" if pd.isna(shown) else (
            f"not an ISO-8601 timestamp: {str(shown)[:40]!r}" if pd.isna(ts.iloc[i])
            else f"timestamp {str(shown)[:40]!r} outside 2000-01-01 .. 2100-01-01")
        problems.append(Problem(file, int(i) + 1, column, reason))
    return ts


def _check_allowed(df: pd.DataFrame, column: str, allowed, file: str, problems: list[Problem],
                   nullable: bool = False) -> None:
    col = df[column]
    bad = ~col.isin(list(allowed)) & ~(col.isna() if nullable else False)
    for i in np.flatnonzero(bad.to_numpy())[: MAX_PROBLEMS_SHOWN + 1]:
        v = col.iloc[i]
        reason = "missing value" if pd.isna(v) else f"{str(v)[:40]!r} is not one of {', '.join(allowed)}"
        problems.append(Problem(file, int(i) + 1, column, reason))


def _check_columns(df: pd.DataFrame, needed, file: str, problems: list[Problem]) -> bool:
    missing = [c for c in needed if c not in df.columns]
    for c in missing:
        problems.append(Problem(file, None, c, "required column is missing"))
    return not missing


def _check_known_leads(df: pd.DataFrame, known: pd.Index, file: str, problems: list[Problem]) -> None:
    unknown = ~df[S.LEAD_ID].isin(known)
    for i in np.flatnonzero(unknown.to_numpy())[: MAX_PROBLEMS_SHOWN + 1]:
        problems.append(Problem(file, int(i) + 1, S.LEAD_ID, f"lead {df[S.LEAD_ID].iloc[i]!r} is not in leads"))


def _as_str(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.StringDtype) and col.dtype.na_value is np.nan:
        return col  # already what the slow path below produces: strings, missing as NaN
    return col.astype(object).where(col.notna(), None).map(lambda v: v if v is None else str(v))


def load_dataset(data_dir: Path | str) -> Dataset:
    """Load and validate `data_dir`; raise `DataError` listing every problem found."""
    data_dir = Path(data_dir)
    problems: list[Problem] = []
    paths = {t: _find(data_dir, t) for t in ("leads", "events")}
    paths["outcomes"] = _find(data_dir, "outcomes", required=False)
    leads = _read(paths["leads"])
    events = _read(paths["events"])
    outcomes = _read(paths["outcomes"]) if paths["outcomes"] else pd.DataFrame(
        {c: pd.Series(dtype=object) for c in S.OUTCOME_COLUMNS})

    lf, ef, of = (str(paths["leads"]), str(paths["events"]), str(paths["outcomes"] or "outcomes"))
    ok = _check_columns(leads, (S.LEAD_ID, S.CREATED_AT), lf, problems)
    ok &= _check_columns(events, (S.LEAD_ID, S.EVENT_TYPE, S.TIMESTAMP), ef, problems)
    ok &= _check_columns(outcomes, (S.LEAD_ID, S.OUTCOME, S.OUTCOME_AT), of, problems)
    if not ok:
        raise DataError(problems)

    leads[S.LEAD_ID] = _as_str(leads[S.LEAD_ID])
    for c in S.LEAD_ATTRIBUTES:
        leads[c] = _as_str(leads[c]) if c in leads.columns else None
    missing_id = leads[S.LEAD_ID].isna()
    for i in np.flatnonzero(missing_id.to_numpy())[:MAX_PROBLEMS_SHOWN]:
        problems.append(Problem(lf, int(i) + 1, S.LEAD_ID, "missing lead id"))
    dup = leads[S.LEAD_ID].duplicated() & ~missing_id
    for i in np.flatnonzero(dup.to_numpy())[:MAX_PROBLEMS_SHOWN]:
        problems.append(Problem(lf, int(i) + 1, S.LEAD_ID, f"duplicate lead id {leads[S.LEAD_ID].iloc[i]!r}"))
    leads[S.CREATED_AT] = parse_timestamps(leads[S.CREATED_AT], lf, S.CREATED_AT, problems)

    events[S.LEAD_ID] = _as_str(events[S.LEAD_ID])
    if S.PAGE not in events.columns:
        events[S.PAGE] = None
    events[S.PAGE] = _as_str(events[S.PAGE])
    events[S.TIMESTAMP] = parse_timestamps(events[S.TIMESTAMP], ef, S.TIMESTAMP, problems)
    _check_allowed(events, S.EVENT_TYPE, S.EVENT_TYPES, ef, problems)
    _check_allowed(events, S.PAGE, S.PAGE_KINDS, ef, problems, nullable=True)
    known = pd.Index(leads[S.LEAD_ID].dropna())
    _check_known_leads(events, known, ef, problems)

    outcomes[S.LEAD_ID] = _as_str(outcomes[S.LEAD_ID])
    if S.REASON not in outcomes.columns:
        outcomes[S.REASON] = None
    outcomes[S.OUTCOME_AT] = parse_timestamps(outcomes[S.OUTCOME_AT], of, S.OUTCOME_AT, problems)
    _check_allowed(outcomes, S.OUTCOME, S.OUTCOMES, of, problems)
    _check_known_leads(outcomes, known, of, problems)
    if problems:
        raise DataError(problems)

    notes = []
    before = len(events)
    events = events[[S.LEAD_ID, S.EVENT_TYPE, S.TIMESTAMP, S.PAGE]].drop_duplicates(ignore_index=True)
    if len(events) < before:
        notes.append(f"removed {before - len(events)} exact duplicate event(s) from {ef}")

    meta_path = data_dir / "dataset.json"
    snapshot = None
    if meta_path.exists():
        snap = json.loads(meta_path.read_text()).get("snapshot_at")
        snapshot = pd.Timestamp(snap).tz_convert("UTC") if snap else None
    if snapshot is None:
        stamps = [leads[S.CREATED_AT].max(), events[S.TIMESTAMP].max(), outcomes[S.OUTCOME_AT].max()]
        snapshot = max(t for t in stamps if pd.notna(t))
        notes.append(f"no dataset.json snapshot_at: the data is taken to end at its last timestamp {snapshot}")
    return Dataset(leads=leads, events=events, outcomes=outcomes.reset_index(drop=True),
                   snapshot_at=snapshot, notes=tuple(notes))
