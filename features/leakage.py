"""The leakage audit: find columns that carry the outcome instead of predicting it.

A field typed in by sales after they talked to a lead ("Tags: will revert after reading the email", a
lead-quality grade) makes a model look excellent offline and useless on a fresh lead. The audit looks for
three tells and grades each suspect `certain` (excluded from training unless the user keeps it) or
`doubtful` (warned about, kept). Criteria and thresholds are in `Thresholds` and docs/leakage.md:

(a) power alone: the column's out-of-fold single-column ROC AUC (every column, numeric ones by quantile bin,
    is scored by the smoothed target rate of its value learned on the other folds; missing is a value) is
    near perfect, or far above the reference (the median of the five best other columns).
(b) fill pattern: the column is filled in at very different rates for positive and negative outcomes, or
    for leads with and without an outcome. For a flat export every row has an outcome, so "was worked by
    sales" is approximated by the fill of the columns already found certain (a field only sales fill): a
    column filled (almost) only where such a field is filled was typed in during the same contact.
(c) time: a timestamp column holds moments after the lead's outcome (event data), or an event type is
    recorded mostly after the outcome.

    For a flat export, a column whose name says it holds the lead's latest state ("Last Activity",
    "Status", "Stage", ...) was recorded when the export was taken, after the outcome: doubtful (the name is
    weak evidence: it only ever makes a column doubtful and does not count towards two tells).

One tell makes a column doubtful; a near-perfect (a), a clear (c), or two independent tells make it certain.

Report: {"suspects": [{"column", "level", "reason", "evidence"}], "excluded": [...], "kept": [...]}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from leadscore.features.tells import (
    CERTAIN,
    DEFAULT_THRESHOLDS,
    DOUBTFUL,
    Thresholds,
    as_timestamps,
    event_types_after_outcome,
    filled_mask,
    rate_where,
    single_column_auc,
)

if TYPE_CHECKING:
    from leadscore.features.loading import Dataset
    from leadscore.features.table import FlatTable

Report = dict[str, Any]  # {"suspects": [...], "excluded": [...], "kept": [...], "thresholds": {...}}
SNAPSHOT_NAME = re.compile(r"^(last|latest|current)\b|\b(status|stage)$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------- the audit


def audit_columns(
    values: dict[str, np.ndarray],
    y: np.ndarray,
    *,
    has_outcome: dict[str, tuple[float, float]] | None = None,
    after_outcome: dict[str, dict[str, Any]] | None = None,
    groups: np.ndarray | None = None,
    keep: Iterable[str] = (),
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    seed: int = 0,
    use_cofill: bool = True,
    snapshot_names: bool = False,
) -> Report:
    """Audit the columns in `values` (name -> array, one entry per labelled row) against the label `y`.

    `has_outcome`: column -> (fill rate of leads with an outcome, fill rate of leads without one), for event
    data where leads without an outcome exist. `after_outcome`: column -> {"share": .., "n": ..} for
    timestamp columns (criterion c). `groups`: lead id per row (rows of one lead stay in one fold).
    `use_cofill`: the flat-table proxy for "worked by sales"; `snapshot_names`: the flat-table latest-state
    name tell (see the module doc).
    """
    th = thresholds
    y = np.asarray(y, dtype=float)
    pos, neg = y == 1, y == 0
    names = list(values)
    filled = {n: filled_mask(values[n]) for n in names}
    auc = {
        n: (single_column_auc(values[n], y, th, groups, seed) if filled[n].sum() >= th.min_filled else 0.5)
        for n in names
    }
    ref = {}
    for n in names:
        others = sorted((auc[o] for o in names if o != n), reverse=True)[: th.reference_top]
        ref[n] = float(np.median(others)) if others else 0.5

    signals: dict[str, dict[str, str]] = {n: {} for n in names}  # name -> {signal: level}
    evidence: dict[str, dict[str, Any]] = {n: {} for n in names}
    reasons: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        a, r = auc[n], ref[n]
        ev = evidence[n]
        ev.update(single_column_auc=round(a, 4), reference_auc=round(r, 4))
        if a >= th.perfect_auc or (a >= th.certain_auc and a - r >= th.certain_gap):
            signals[n]["a"] = CERTAIN
            reasons[n].append(
                f"alone it predicts the label almost perfectly (out-of-fold AUC {a:.3f}, the best "
                f"other columns {r:.3f})"
            )
        elif a >= th.doubtful_auc and a - r >= th.doubtful_gap:
            signals[n]["a"] = DOUBTFUL
            reasons[n].append(
                f"alone it predicts the label far better than the others (out-of-fold AUC {a:.3f} vs {r:.3f})"
            )
        f = filled[n]
        fill_rate = float(f.mean())
        ev["fill_rate"] = round(fill_rate, 4)
        fp, fn = rate_where(f, pos), rate_where(f, neg)  # None: no row of that outcome, nothing to compare
        if 0 < fill_rate < 1 and f.sum() >= th.min_filled and fp is not None and fn is not None:
            ev.update(fill_rate_positive=round(fp, 4), fill_rate_negative=round(fn, 4))
            if abs(fp - fn) >= th.fill_gap:
                signals[n]["b_label"] = DOUBTFUL
                reasons[n].append(f"filled in for {fp:.0%} of positive but {fn:.0%} of negative outcomes")
        if has_outcome and n in has_outcome:
            fw, fo = has_outcome[n]
            ev.update(fill_rate_with_outcome=round(fw, 4), fill_rate_without_outcome=round(fo, 4))
            if abs(fw - fo) >= th.fill_gap:
                signals[n]["b_outcome"] = DOUBTFUL
                reasons[n].append(
                    f"filled in for {fw:.0%} of leads with an outcome but {fo:.0%} of leads without"
                )
        if after_outcome and n in after_outcome:
            share = after_outcome[n]["share"]
            ev.update(after_outcome_share=round(share, 4), after_outcome_n=after_outcome[n]["n"])
            if share >= th.after_doubtful:
                signals[n]["c"] = CERTAIN if share >= th.after_certain else DOUBTFUL
                reasons[n].append(f"{share:.0%} of its timestamps fall after the lead's outcome")

        if snapshot_names and SNAPSHOT_NAME.search(n.replace("_", " ")):
            signals[n]["c_snapshot"] = DOUBTFUL
            evidence[n]["snapshot_name"] = True
            reasons[n].append(
                "its name says it holds the lead's latest state, recorded when the export was "
                "taken (after the outcome)"
            )

    def certain(n: str) -> bool:
        s = signals[n]
        return CERTAIN in s.values() or len(set(s) - {"c_snapshot"}) >= 2

    if use_cofill:  # flat tables: filled only where a certain (sales-only) field is filled; to a fixed point
        for _ in range(3):
            proxies = [p for p in names if certain(p) and 0 < filled[p].mean() <= th.cofill_max_proxy_fill]
            changed = False
            for n in names:
                f = filled[n]
                if n in proxies or "b_cofill" in signals[n] or f.sum() < th.min_filled or f.mean() >= 0.99:
                    continue
                for p in proxies:
                    share = float(filled[p][f].mean())
                    if share >= th.cofill:
                        signals[n]["b_cofill"] = DOUBTFUL
                        evidence[n].update(
                            cofilled_with=p,
                            cofill_share=round(share, 4),
                            proxy_fill_rate=round(float(filled[p].mean()), 4),
                        )
                        reasons[n].append(
                            f"filled almost only where {p!r} (a sales-entered field) is filled: "
                            f"{share:.1%} of its filled rows vs {filled[p].mean():.0%} of all rows"
                        )
                        changed = True
                        break
            if not changed:
                break
    return _report(names, signals, evidence, reasons, keep, certain, th)


def _report(
    names: list[str],
    signals: dict[str, dict[str, str]],
    evidence: dict[str, dict[str, Any]],
    reasons: dict[str, list[str]],
    keep: Iterable[str],
    certain: Callable[[str], bool],
    th: Thresholds,
) -> Report:
    keep = set(keep)
    suspects: list[dict[str, Any]] = []
    excluded: list[str] = []
    kept: list[str] = []
    for n in names:
        if not signals[n]:
            continue
        level = CERTAIN if certain(n) else DOUBTFUL
        suspects.append(
            {
                "column": n,
                "level": level,
                "reason": "; ".join(reasons[n]),
                "evidence": {**evidence[n], "signals": sorted(signals[n])},
            }
        )
        if level == CERTAIN:
            (kept if n in keep else excluded).append(n)
    order = {CERTAIN: 0, DOUBTFUL: 1}
    suspects.sort(key=lambda s: (order[s["level"]], -s["evidence"].get("single_column_auc", 0.5)))
    return {"suspects": suspects, "excluded": excluded, "kept": kept, "thresholds": th.to_dict()}


def audit_table(
    table: FlatTable, keep: Iterable[str] = (), thresholds: Thresholds = DEFAULT_THRESHOLDS, seed: int = 0
) -> Report:
    """Audit every feature column of a `table.FlatTable` (identifiers etc. are not features)."""
    return audit_columns(
        table.values(), table.label, keep=keep, thresholds=thresholds, seed=seed, snapshot_names=True
    )


# ------------------------------------------------------------------------------------------ event data


def audit_dataset(
    dataset: Dataset,
    rows_with_labels: pd.DataFrame,
    keep: Iterable[str] = (),
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Report:
    """Audit event data: the dataset's custom lead columns and its event types, against the outcomes.

    `dataset`: a `leadscore.features.loading.Dataset`; `rows_with_labels`: the training rows (`lead_id`,
    `as_of`, `label`), e.g. `training_rows(dataset, definition)`. Custom columns are checked with (a) and
    (b) (positive vs negative rows, leads with vs without an outcome) and, if they hold timestamps, (c);
    event types with (c): an event type recorded after the lead's first outcome for most resolved leads
    is a consequence of the outcome (doubtful only: point-in-time features never see events at or after
    the as-of moment, so such events cannot leak into training rows).
    """
    from leadscore.features import schema as S

    th = thresholds
    leads = dataset.leads.set_index(S.LEAD_ID)
    outcomes = dataset.outcomes
    first_outcome = outcomes.groupby(S.LEAD_ID)[S.OUTCOME_AT].min()
    with_outcome = leads.index.isin(first_outcome.index)
    row_ids = rows_with_labels[S.LEAD_ID].to_numpy()
    y = rows_with_labels["label"].to_numpy()
    values, has_outcome, after = {}, {}, {}
    for c in dataset.custom_columns:
        col = leads[c]
        ts = as_timestamps(col)
        filled = col.notna().to_numpy() & (col.astype(str).str.strip() != "").to_numpy()
        if with_outcome.any() and (~with_outcome).any():
            has_outcome[c] = (float(filled[with_outcome].mean()), float(filled[~with_outcome].mean()))
        if ts is not None:
            fo = first_outcome.reindex(leads.index)
            both = ts.notna() & fo.notna()
            if both.sum() >= th.min_filled:
                after[c] = {"share": float((ts[both] > fo[both]).mean()), "n": int(both.sum())}
            per_row = ts.reindex(row_ids).to_numpy()
            asof = rows_with_labels["as_of"].to_numpy()
            # as a feature a timestamp is its age at the as-of moment (days); missing stays missing
            values[c] = (
                ((asof - per_row) / np.timedelta64(1, "D")).astype(float) if len(per_row) else np.array([])
            )
        else:
            raw = col.reindex(row_ids).to_numpy(dtype=object)
            values[c] = np.array(
                [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in raw],
                dtype=object,
            )
    report = (
        audit_columns(
            values,
            y,
            has_outcome=has_outcome,
            after_outcome=after,
            groups=row_ids,
            keep=keep,
            thresholds=th,
            use_cofill=False,
        )
        if values and len(y)
        else _report([], {}, {}, {}, keep, lambda n: False, th)
    )
    report["suspects"].extend(event_types_after_outcome(dataset, first_outcome, th))
    return report


def summary_lines(report: Report) -> list[str]:
    """Human lines for a console: excluded (loud), kept by the user, doubtful (warned)."""
    lines = []
    by_col = {s["column"]: s for s in report["suspects"]}
    for c in report["excluded"]:
        lines.append(f"LEAK excluded {c!r}: {by_col[c]['reason']} (keep it with --keep {c!r})")
    for c in report.get("kept", []):
        lines.append(f"LEAK KEPT on request {c!r}: {by_col[c]['reason']}")
    for s in report["suspects"]:
        if s["level"] == DOUBTFUL:
            lines.append(
                f"doubtful {s['column']!r}: {s['reason']} (kept; drop it with --drop if it is entered "
                "after contact)"
            )
    return lines
