"""What the cells and columns of a flat export are: missing markers, the text of a code, the kind of a column
(see table.py's docstring and docs/flat-exports.md) and the 0/1 label."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from leadscore.features.problems import DataError, Problem

DEFAULT_MISSING: tuple[str, ...] = ("", "NA", "N/A", "NaN", "null", "None", "Select", "-")
MAX_CODE_VALUES = 5  # whole-number columns with this many distinct values or fewer are categorical codes
DATETIME_SHARE = 0.95  # a text column is a datetime when this share of its filled cells parses as ISO-8601
NUMERIC_SHARE = 0.98  # a column this numeric with a few text cells has bad cells rather than being text
TRUE_VALUES = {"1", "1.0", "true", "yes", "y", "t", "won", "converted", "qualified"}
FALSE_VALUES = {"0", "0.0", "false", "no", "n", "f", "lost", "disqualified"}
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
Kind = str  # "numeric" | "categorical" | "identifier" | "datetime" | "constant"


def column_values(col: pd.Series, kind: Kind) -> np.ndarray:
    if kind == "numeric":
        return np.asarray(pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(to_text(col).to_numpy(dtype=object))


def _clean(v: object, markers: set[str]) -> object:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    s = str(v).strip() if not isinstance(v, (int, float, np.number)) else v
    if isinstance(s, str) and s.lower() in markers:
        return None
    return s


def _code_text(v: object) -> str:
    """Categorical text of a value; whole-number codes read the same from CSV (\"2\") and Parquet (2.0)."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return v if isinstance(v, str) else str(v)


def as_cells(col: pd.Series, markers: set[str]) -> pd.Series:
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
