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

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from leadscore.features.problems import MAX_PROBLEMS_SHOWN, DataError, Problem

DEFAULT_MISSING: tuple[str, ...] = ("", "NA", "N/A", "NaN", "null", "None", "Select", "-")
MAX_CODE_VALUES = 5  # whole-number columns with this many distinct values or fewer are categorical codes
DATETIME_SHARE = 0.95  # a text column is a datetime when this share of its filled cells parses as ISO-8601
NUMERIC_SHARE = 0.98  # a column this numeric with a few text cells has bad cells rather than being text
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
TRUE_VALUES = {"1", "1.0", "true", "yes", "y", "t", "won", "converted", "qualified"}
FALSE_VALUES = {"0", "0.0", "false", "no", "n", "f", "lost", "disqualified"}
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")

Kind = str  # "numeric" | "categorical" | "identifier" | "datetime" | "constant"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    kind: Kind
    n_missing: int
    n_distinct: int
    note: str = ""

    def to_dict(self) -> dict:
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

    def spec(self, names: Iterable[str]) -> dict:
        """What the pyfunc needs to turn raw flat rows into the same values (stored in model.info)."""
        names = list(names)
        return {
            "columns": {n: self.columns[n].kind for n in names},
            "missing": list(self.missing_markers),
            "id_column": self.id_column,
        }


def column_values(col: pd.Series, kind: Kind) -> np.ndarray:
    if kind == "numeric":
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return to_text(col).to_numpy(dtype=object)


def flat_values(frame: pd.DataFrame, spec: dict) -> tuple[dict[str, np.ndarray], list[str]]:
    """Raw flat rows (e.g. pyfunc input) -> (values, lead ids) with the kinds and markers of training.

    A missing column is all-missing (the models handle missing values); numeric cells that are not numbers
    count as missing too, since a scoring request must not fail on one odd cell.
    """
    markers = {m.strip().lower() for m in spec.get("missing", DEFAULT_MISSING)}
    n = len(frame)
    values = {}
    for name, kind in spec["columns"].items():
        col = frame[name] if name in frame.columns else pd.Series([None] * n, dtype=object)
        col = _as_cells(col, markers)
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


def _clean(v, markers: set[str]):
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    s = str(v).strip() if not isinstance(v, (int, float, np.number)) else v
    if isinstance(s, str) and s.lower() in markers:
        return None
    return s


def _code_text(v) -> str:
    """Categorical text of a value; whole-number codes read the same from CSV (\"2\") and Parquet (2.0)."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return v if isinstance(v, str) else str(v)


# ------------------------------------------------------------------------------------------------ reading


def sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel  # one column, or nothing to go on: plain commas


def _read_csv(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n")  # 0 = header line
        problems.append(
            Problem(
                str(path),
                line if line > 0 else None,
                None,
                f"not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}); re-export the file as UTF-8",
            )
        )
        return None
    if not text.strip():
        problems.append(Problem(str(path), None, None, "the file is empty"))
        return None
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES:
        sample = sample[: sample.rfind("\n") + 1] or sample
    dialect = sniff_dialect(sample)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        rows = list(reader)
    except csv.Error as e:
        problems.append(Problem(str(path), reader.line_num - 1 or None, None, f"malformed CSV: {e}"))
        return None
    rows = [r for r in rows if r]  # blank lines carry nothing
    header, body = rows[0], rows[1:]
    _check_header(header, str(path), problems)
    width = len(header)
    for i, r in enumerate(body):
        if len(r) != width:
            problems.append(
                Problem(
                    str(path),
                    i + 1,
                    None,
                    f"{len(r)} fields where the header has {width} "
                    f"(delimiter {dialect.delimiter!r}); check quoting",
                )
            )
            if len(problems) > MAX_PROBLEMS_SHOWN:
                break
    if problems:
        return None
    return (
        pd.DataFrame(body, columns=header, dtype=object)
        if body
        else pd.DataFrame(columns=header, dtype=object)
    )


def _check_header(header: list[str], file: str, problems: list[Problem]) -> None:
    seen = set()
    for j, name in enumerate(header):
        if not name.strip():
            problems.append(Problem(file, None, f"#{j + 1}", "column without a name in the header"))
        elif name in seen:
            problems.append(Problem(file, None, name, "column name appears twice in the header"))
        seen.add(name)


def read_raw(path: Path | str) -> pd.DataFrame:
    """The file's cells, unparsed (CSV: str; Parquet: as stored). Raises `DataError` if it cannot be read."""
    path = Path(path)
    problems: list[Problem] = []
    if not path.exists():
        raise DataError([Problem(str(path), None, None, "no such file")])
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except Exception as e:
            raise DataError([Problem(str(path), None, None, f"not a readable Parquet file: {e}")]) from e
        _check_header([str(c) for c in df.columns], str(path), problems)
        df.columns = [str(c) for c in df.columns]
    else:
        df = _read_csv(path, problems)
    if problems:
        raise DataError(problems)
    if len(df) == 0:
        raise DataError([Problem(str(path), None, None, "no data rows under the header")])
    return df


# ------------------------------------------------------------------------------------------------ inference


def _as_cells(col: pd.Series, markers: set[str]) -> pd.Series:
    """object Series: None for missing, stripped str for text, numbers as they are (Parquet)."""
    codes, uniques = pd.factorize(col.astype(object), use_na_sentinel=True)
    cleaned = np.array([_clean(v, markers) for v in uniques] + [None], dtype=object)
    return pd.Series(cleaned[codes], index=col.index, dtype=object)  # code -1 (missing) -> the last None


def to_text(col: pd.Series) -> pd.Series:
    """Categorical text of each value (None stays None); see `_code_text`."""
    codes, uniques = pd.factorize(col.astype(object), use_na_sentinel=True)
    texts = np.array([v if type(v) is str else _code_text(v) for v in uniques] + [None], dtype=object)
    return pd.Series(texts[codes], index=col.index, dtype=object)


def infer_kind(cells: pd.Series, n_rows: int) -> tuple[Kind, str, pd.Series | None]:
    """(kind, note, bad-cell mask for an almost-numeric column or None)."""
    filled = cells.dropna()
    if filled.empty:
        return "constant", "every value is missing", None
    as_text = to_text(filled)
    counts = as_text.value_counts(sort=False)
    n_distinct = len(counts)
    if n_distinct <= 1:
        return "constant", f"one value only ({as_text.iloc[0]!r})", None
    num = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    is_num = ~np.isnan(num)
    share = counts.to_numpy()[is_num].sum() / len(filled)
    if share == 1.0:
        whole = bool(np.all(np.mod(num, 1) == 0))
        if whole and n_distinct == n_rows:
            return "identifier", "one distinct whole number per row", None
        if whole and n_distinct <= MAX_CODE_VALUES:
            return "categorical", f"whole numbers with {n_distinct} distinct values: treated as codes", None
        return "numeric", "", None
    if share >= NUMERIC_SHARE and len(filled) >= 50:
        return "numeric", "", to_text(cells).isin(set(counts.index[~is_num]))
    first = as_text.head(20)
    if first.map(lambda v: bool(_ISO.match(v))).mean() >= 0.5:
        ts = pd.to_datetime(filled.astype(str), utc=True, format="ISO8601", errors="coerce")
        if ts.notna().mean() >= DATETIME_SHARE:
            return "datetime", "ISO-8601 dates", None
    if n_distinct == n_rows:
        return "identifier", "one distinct value per row", None
    return "categorical", "", None


def parse_label(raw: pd.Series, positive: str | None, file: str, column: str) -> tuple[np.ndarray, str]:
    """0/1 (NaN where missing) and the positive value. Without `positive`, the label must look binary."""
    present = to_text(raw.dropna())
    values = sorted(present.unique())
    if positive is None:
        lowered = {v.lower() for v in values}
        pos = [v for v in values if v.lower() in TRUE_VALUES]
        if len(values) == 2 and len(pos) == 1 and (lowered - {pos[0].lower()}) <= FALSE_VALUES:
            positive = pos[0]
        elif len(values) == 1 and values[0].lower() in TRUE_VALUES | FALSE_VALUES:
            positive = values[0] if values[0].lower() in TRUE_VALUES else "1"
        else:
            shown = ", ".join(repr(v) for v in values[:10])
            raise DataError(
                [
                    Problem(
                        file,
                        None,
                        column,
                        f"cannot tell which label value is positive (values: {shown}); give --positive VALUE",
                    )
                ]
            )
    else:
        positive = _code_text(positive.strip())
        if positive not in set(values):
            shown = ", ".join(repr(v) for v in values[:10])
            raise DataError(
                [Problem(file, None, column, f"--positive {positive!r} never occurs (values: {shown})")]
            )
    y = np.full(len(raw), np.nan)
    ok = raw.notna().to_numpy()
    y[ok] = (to_text(raw[ok]) == positive).to_numpy(dtype=float)
    return y, positive


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

    cells = {c: _as_cells(raw[c], marker_set) for c in raw.columns}
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


def _close(name: str, columns) -> str:
    import difflib

    near = difflib.get_close_matches(name, [str(c) for c in columns], n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in near)}?)" if near else ""
