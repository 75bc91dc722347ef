"""The tells of a leak, measured for the audit in `leakage` (criteria and thresholds: docs/leakage.md):
(a) how well one column alone separates the outcomes (`single_column_auc`), (b) how its fill differs
(`filled_mask`, `rate_where`), (c) timestamps and event types recorded after the outcome (`as_timestamps`,
`event_types_after_outcome`). `Thresholds` holds the measures' settings and the grading thresholds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from leadscore.features import schema as S
from leadscore.features.loading import Dataset
from sklearn.metrics import roc_auc_score

CERTAIN, DOUBTFUL = "certain", "doubtful"
EVENT_PREFIX = "event:"


@dataclass(frozen=True)
class Thresholds:
    folds: int = 5  # out-of-fold target rates: a value's rate is never learned on the row it scores
    smoothing: float = 20.0  # prior weight: a value seen 20 times is half its own rate, half the overall rate
    numeric_bins: int = 20  # numeric columns are scored by quantile bin (any shape, not only monotone)
    perfect_auc: float = 0.97  # alone this good: a copy of the label, whatever the others do
    certain_auc: float = 0.90  # (a) certain: at least this ...
    certain_gap: float = 0.10  # ... and this far above the reference
    doubtful_auc: float = 0.75  # (a) doubtful: at least this ...
    doubtful_gap: float = 0.05  # ... and this far above the reference
    reference_top: int = 5  # reference = median AUC of the best `reference_top` other columns
    fill_gap: float = 0.20  # (b) fill rate differs by 20 points between outcomes (or with/without one)
    cofill: float = 0.97  # (b) flat tables: share of a column's filled rows where a certain leak is filled
    cofill_max_proxy_fill: float = 0.85  # ... only meaningful if the certain leak is often empty
    after_certain: float = 0.20  # (c) share of timestamps after the outcome that makes a column certain
    after_doubtful: float = 0.02  # (c) ... doubtful
    event_after: float = 0.50  # (c) an event type recorded after the outcome for most resolved leads
    min_filled: int = 30  # fill rates and AUCs on fewer filled rows than this are not judged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_THRESHOLDS = Thresholds()


def _keys(values: np.ndarray, bins: int) -> np.ndarray:
    """Integer key per row: category code or quantile bin; -1 = missing (a value of its own)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        x = arr.astype(float)
        ok = ~np.isnan(x)
        out = np.full(len(x), -1, dtype=np.int64)
        if ok.any():
            edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, bins + 1)[1:-1]))
            out[ok] = np.searchsorted(edges, x[ok], side="right")
        return out
    codes, _ = pd.factorize(pd.Series(arr, dtype=object), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64)


def _folds(n: int, k: int, groups: np.ndarray | None, seed: int) -> np.ndarray:
    if groups is not None:  # all rows of a lead in one fold
        return np.asarray(
            pd.util.hash_array(np.asarray(groups, dtype=object).astype(str)) % k, dtype=np.int64
        )
    return np.random.default_rng(seed).permutation(n) % k


def single_column_auc(
    values: np.ndarray,
    y: np.ndarray,
    th: Thresholds = DEFAULT_THRESHOLDS,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> float:
    """Out-of-fold ROC AUC of one column alone (smoothed target rate per value), direction-free."""
    key = _keys(values, th.numeric_bins) + 1  # 0 = missing
    y = np.asarray(y, dtype=float)
    if len(np.unique(y)) < 2:
        return 0.5
    fold = _folds(len(y), th.folds, groups, seed)
    m = int(key.max()) + 1
    p = np.empty(len(y))
    for f in range(th.folds):
        tr, te = fold != f, fold == f
        if not te.any():
            continue
        prior = y[tr].mean() if tr.any() else y.mean()
        s = np.bincount(key[tr], weights=y[tr], minlength=m)
        c = np.bincount(key[tr], minlength=m)
        p[te] = ((s + th.smoothing * prior) / (c + th.smoothing))[key[te]]
    auc = roc_auc_score(y, p)
    return float(max(auc, 1 - auc))


def filled_mask(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return np.asarray(~np.isnan(arr.astype(float)))
    return np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in arr], dtype=bool)


def rate_where(mask: np.ndarray, where: np.ndarray) -> float | None:
    return float(mask[where].mean()) if where.sum() >= 1 else None


def as_timestamps(col: pd.Series) -> pd.Series | None:
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
    present = col.dropna()
    if present.empty or not all(isinstance(v, str) for v in present.head(20)):
        return None
    ts = pd.to_datetime(col, utc=True, format="ISO8601", errors="coerce")
    return ts if ts[present.index].notna().mean() >= 0.95 else None


def event_types_after_outcome(
    dataset: Dataset, first_outcome: pd.Series, th: Thresholds
) -> list[dict[str, Any]]:
    ev = dataset.events
    ev = ev[ev[S.LEAD_ID].isin(first_outcome.index)]
    if ev.empty:
        return []
    fo = ev[S.LEAD_ID].map(first_outcome)
    after = (ev[S.TIMESTAMP] >= fo).to_numpy()
    frame = pd.DataFrame(
        {"type": ev[S.EVENT_TYPE].to_numpy(), "lead": ev[S.LEAD_ID].to_numpy(), "after": after}
    )
    per_lead = frame.groupby(["type", "lead"])["after"].agg(
        ["any", "all"]
    )  # lead-level, so chatty leads weigh one
    out = []
    for t, g in per_lead.groupby(level="type"):
        n = len(g)
        share = float(g["all"].mean())  # leads whose events of this type all come at or after the outcome
        if n >= th.min_filled and share >= th.event_after:
            out.append(
                {
                    "column": f"{EVENT_PREFIX}{t}",
                    "level": DOUBTFUL,
                    "reason": f"for {share:.0%} of the {n} resolved leads with {t!r} events, every such "
                    "event is recorded at or after the outcome (a consequence of it); point-in-time "
                    "features only use events before the as-of moment, so this cannot leak into "
                    "training rows",
                    "evidence": {
                        "after_outcome_share": round(share, 4),
                        "leads": n,
                        "any_after_share": round(float(g["any"].mean()), 4),
                        "signals": ["c"],
                    },
                }
            )
    return out
