"""Read a flat one-row-per-lead export (CSV or Parquet) with an outcome column, and infer what each column is.

A CRM export is a snapshot: one row per lead, one column holding what became of it. `read_table` reads it,
turns the configured missing markers into missing values, infers each column's kind and builds the label.
It never drops anything silently: bad cells and malformed lines raise `DataError` naming file, row, column
and reason; rows whose label is missing are left out and counted (see `FlatTable.excluded_rows`).

Column kinds (see docs/flat-exports.md):
- `identifier`: named by `--id`, or one distinct value per row (text, or whole numbers); never a feature.
- `datetime`: ISO-8601 dates/times in at least 95 % of filled cells; not a feature (usable as `time:COLUMN`).
- `numeric`: every filled cell is a number. Whole numbers with at most `MAX_CODE_VALUES` distinct values
  are codes or flags and become `categorical`.
- `constant`: at most one distinct value; carries nothing, not a feature.
- `categorical`: everything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from leadscore.features.cells import (
    DEFAULT_MISSING,
    Kind,
    as_cells,
    column_values,
    infer_kind,
    parse_label,
    to_text,
)
from leadscore.features.problems import MAX_PROBLEMS_SHOWN, DataError, Problem
from leadscore.features.rawfile import read_raw


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    kind: Kind
    n_missing: int
    n_distinct: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "missing": self.n_missing,
            "distinct": self.n_distinct,
            **({"note": self.note} if self.note else {}),
        }


@dataclass
class FlatTable:
    path: str
    frame: pd.DataFrame  # kept rows; numerics as float, everything else as object (str or None)
    label: np.ndarray  # 0/1 per kept row
    label_column: str
    positive: str  # the label value counted as positive
    columns: dict[str, ColumnInfo]  # every column but the label
    lead_ids: np.ndarray  # str per kept row: the id column, or the 1-based data row number
    row_numbers: np.ndarray  # 1-based data row number in the file of each kept row
    id_column: str | None
    missing_markers: tuple[str, ...]
    excluded_rows: list[int] = field(default_factory=list)  # data rows left out because the label is missing
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return [c for c, info in self.columns.items() if info.kind in ("numeric", "categorical")]

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(c for c in self.features if self.columns[c].kind == "categorical")

    def values(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Feature name -> array as `fit_models` wants it: categoricals str/None, numerics float."""
        return {n: column_values(self.frame[n], self.columns[n].kind) for n in (names or self.features)}

    def spec(self, names: Iterable[str]) -> dict[str, Any]:
        """What the pyfunc needs to turn raw flat rows into the same values (stored in model.info)."""
        names = list(names)
        return {
            "columns": {n: self.columns[n].kind for n in names},
            "missing": list(self.missing_markers),
            "id_column": self.id_column,
        }


def flat_values(frame: pd.DataFrame, spec: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Raw flat rows (e.g. pyfunc input) -> (values, lead ids) with the kinds and markers of training.

    A missing column is all-missing (the models handle missing values); numeric cells that are not numbers
    count as missing too, since a scoring request must not fail on one odd cell.
    """
    markers = {m.strip().lower() for m in spec.get("missing", DEFAULT_MISSING)}
    n = len(frame)
    values = {}
    for name, kind in spec["columns"].items():
        col = frame[name] if name in frame.columns else pd.Series([None] * n, dtype=object)
        col = as_cells(col, markers)
        if kind == "categorical":
            col = to_text(col)
        values[name] = column_values(col, kind)
    id_col = spec.get("id_column")
    if id_col and id_col in frame.columns:
        ids = [str(v) for v in frame[id_col]]
    elif "lead_id" in frame.columns:
        ids = [str(v) for v in frame["lead_id"]]
    else:
        ids = [str(i + 1) for i in range(n)]
    return values, ids


def read_table(
    path: Path | str,
    label: str,
    *,
    positive: str | None = None,
    id_column: str | None = None,
    drop: Iterable[str] = (),
    missing: Iterable[str] = DEFAULT_MISSING,
) -> FlatTable:
    """Read, clean and type a flat export. Raises `DataError` (file, row, column, reason) on bad input."""
    path = Path(path)
    file = str(path)
    markers = tuple(missing)
    marker_set = {m.strip().lower() for m in markers}
    raw = read_raw(path)
    drop = list(drop)
    problems = [
        Problem(file, None, c, f"{what} names no column of the file{_close(c, raw.columns)}")
        for c, what in (
            [(label, "--label")]
            + ([(id_column, "--id")] if id_column else [])
            + [(d, "--drop") for d in drop]
        )
        if c not in raw.columns
    ]
    if problems:
        raise DataError(problems)

    cells = {c: as_cells(raw[c], marker_set) for c in raw.columns}
    y, positive = parse_label(cells[label], positive, file, label)
    keep = ~np.isnan(y)
    excluded_rows = (np.flatnonzero(~keep) + 1).tolist()
    notes = []
    if excluded_rows:
        shown = ", ".join(map(str, excluded_rows[:10])) + (", ..." if len(excluded_rows) > 10 else "")
        notes.append(
            f"{len(excluded_rows)} row(s) have no {label!r} value (no outcome yet) and are left out: "
            f"data rows {shown}"
        )
    n = int(keep.sum())
    if n == 0:
        raise DataError([Problem(file, None, label, "no row has a label value")])

    columns: dict[str, ColumnInfo] = {}
    frame = {}
    problems = []
    for c in raw.columns:
        if c == label:
            continue
        col = cells[c][keep].reset_index(drop=True)
        n_missing = int(col.isna().sum())
        if c == id_column:
            kind, note, bad = "identifier", "named by --id", None
        elif c in drop:
            kind, note, bad = "dropped", "named by --drop", None
        else:
            kind, note, bad = infer_kind(col, n)
        if bad is not None and bad.any():
            rows_in_file = np.flatnonzero(keep)[np.flatnonzero(bad.to_numpy())] + 1
            for r, v in list(zip(rows_in_file, col[bad], strict=False))[:MAX_PROBLEMS_SHOWN]:
                problems.append(
                    Problem(
                        file,
                        int(r),
                        c,
                        f"{str(v)[:40]!r} is not a number (the column is numeric in "
                        f"{(1 - bad.sum() / max(len(col) - n_missing, 1)) * 100:.1f} % "
                        "of its filled cells); fix the cell or add it to --missing",
                    )
                )
        n_distinct = int(to_text(col.dropna()).nunique())
        columns[c] = ColumnInfo(c, kind, n_missing, n_distinct, note)
        if kind == "numeric":
            frame[c] = pd.to_numeric(col, errors="coerce").astype(float)
        elif kind == "categorical":
            frame[c] = to_text(col)
        else:
            frame[c] = to_text(col)
    if problems:
        raise DataError(problems)

    if id_column:
        ids = frame[id_column]
        dup = ids.duplicated() & ids.notna()
        bad = [
            Problem(
                file,
                int(np.flatnonzero(keep)[i]) + 1,
                id_column,
                "missing id" if ids.iloc[i] is None else f"duplicate id {ids.iloc[i]!r}",
            )
            for i in np.flatnonzero((dup | ids.isna()).to_numpy())[:MAX_PROBLEMS_SHOWN]
        ]
        if bad:
            raise DataError(bad)
        lead_ids = ids.astype(str).to_numpy()
    else:
        width = len(str(len(raw)))
        lead_ids = np.array([f"{r:0{width}d}" for r in np.flatnonzero(keep) + 1], dtype=object)
    for c, info in columns.items():
        if info.kind in ("identifier", "constant", "datetime") and c != id_column:
            notes.append(f"column {c!r} is not a feature: {info.kind} ({info.note})")
    return FlatTable(
        path=file,
        frame=pd.DataFrame(frame),
        label=y[keep].astype(np.int8),
        label_column=label,
        positive=positive,
        columns=columns,
        lead_ids=lead_ids,
        row_numbers=np.flatnonzero(keep) + 1,
        id_column=id_column,
        missing_markers=markers,
        excluded_rows=excluded_rows,
        notes=notes,
    )


def _close(name: str, columns: Iterable[object]) -> str:
    import difflib

    near = difflib.get_close_matches(name, [str(c) for c in columns], n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in near)}?)" if near else ""
