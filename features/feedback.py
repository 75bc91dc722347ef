"""Merge the feedback sales gave through the service into a dataset's outcomes, for the next retrain.

The service stores feedback (`leadscore.serve.store.feedback_frame`: lead_id, outcome, at, reason, ...); the
CRM export is a `Dataset`. `with_feedback` returns the dataset with the feedback folded into its `outcomes`
table, so `training_rows` labels rows with what sales said, through the same code as any export.

Semantics (precise, so a label can always be traced back):

* **Verdicts** (`qualified`, `disqualified`) are sales' word on a lead, and the latest one wins. For a lead
  with at least one feedback verdict, all of the export's verdict rows for that lead are replaced by ONE
  verdict row whose outcome and reason are those of the lead's *latest* feedback verdict (by `at`, ties by
  `id` when given, else by row order) and whose time is the lead's *earliest* verdict time from either
  source: the lead was decided when it was first decided; a later verdict corrects that decision, it does
  not move it (moving it later would turn rows after the real decision, whose features already see the
  post-decision sales calls, into training rows).
* **Follow-ups** `won` / `lost` from feedback are appended as outcome rows; a feedback row equal to an
  existing outcome (same lead, outcome and time to the millisecond) is dropped, and so are repeats within
  the feedback. The export's own follow-ups (`opportunity`, `won`, `lost`) are kept as they are.
* Ignored, and counted in `Dataset.notes`: feedback for a lead not in the export (live leads the export
  does not have yet), feedback dated after the export's `snapshot_at` (nothing after the snapshot is known,
  so the censoring of incomplete horizons stays exact: take a newer export to use it), and feedback dated
  before its lead was created.
* Leads, events and `snapshot_at` are unchanged. Invalid feedback (missing column, unknown outcome,
  unreadable time) raises `DataError` naming the row, column and reason; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from leadscore.features import schema as S
from leadscore.features.checks import parse_timestamps
from leadscore.features.loading import Dataset
from leadscore.features.problems import DataError, Problem

VERDICTS = ("qualified", "disqualified")
FOLLOW_UPS = ("won", "lost")
FEEDBACK_OUTCOMES = VERDICTS + FOLLOW_UPS  # what POST /v1/feedback accepts
SOURCE = "feedback"


def _validated(feedback: pd.DataFrame) -> pd.DataFrame:
    """lead_id, outcome, at (UTC, ms), reason, order; or DataError listing every problem."""
    problems: list[Problem] = []
    for col in (S.LEAD_ID, S.OUTCOME, S.OUTCOME_AT):
        if col not in feedback.columns:
            problems.append(Problem(SOURCE, None, col, "required column is missing"))
    if problems:
        raise DataError(problems)
    fb = feedback.reset_index(drop=True)
    out = pd.DataFrame(
        {
            S.LEAD_ID: fb[S.LEAD_ID]
            .astype(object)
            .where(fb[S.LEAD_ID].notna(), None)
            .map(lambda v: v if v is None else str(v)),
            S.OUTCOME: fb[S.OUTCOME].astype(object),
            S.OUTCOME_AT: parse_timestamps(fb[S.OUTCOME_AT], SOURCE, S.OUTCOME_AT, problems),
            S.REASON: fb[S.REASON].astype(object).where(fb[S.REASON].notna(), None)
            if S.REASON in fb.columns
            else pd.Series(None, index=fb.index, dtype=object),
        }
    )
    for i in np.flatnonzero(out[S.LEAD_ID].isna().to_numpy())[:20]:
        problems.append(Problem(SOURCE, int(i) + 1, S.LEAD_ID, "missing lead id"))
    bad = ~out[S.OUTCOME].isin(FEEDBACK_OUTCOMES)
    for i in np.flatnonzero(bad.to_numpy())[:20]:
        v = out[S.OUTCOME].iloc[i]
        reason = (
            "missing value" if pd.isna(v) else f"{str(v)[:40]!r} is not one of {', '.join(FEEDBACK_OUTCOMES)}"
        )
        problems.append(Problem(SOURCE, int(i) + 1, S.OUTCOME, reason))
    if problems:
        raise DataError(problems)
    # the order in which feedback was given: `at`, then the store's id (or the frame's order)
    out["order"] = (
        pd.to_numeric(fb["id"], errors="coerce").to_numpy() if "id" in fb.columns else np.arange(len(fb))
    )
    return out


def with_feedback(dataset: Dataset, feedback: pd.DataFrame) -> Dataset:
    """`dataset` with `feedback` (columns lead_id, outcome, at, optional reason and id) merged into its
    outcomes as described in the module docstring. Returns a new Dataset; the input is not modified."""
    if len(feedback) == 0:
        return replace(dataset, notes=(*dataset.notes, "feedback: none given"))
    fb = _validated(feedback)
    n_given = len(fb)

    created = dataset.leads.set_index(S.LEAD_ID)[S.CREATED_AT]
    lead_created = fb[S.LEAD_ID].map(created)
    unknown = lead_created.isna()
    after_snapshot = ~unknown & (fb[S.OUTCOME_AT] > dataset.snapshot_at)
    before_created = ~unknown & ~after_snapshot & (fb[S.OUTCOME_AT] < lead_created)
    fb = fb[~(unknown | after_snapshot | before_created)]

    out = dataset.outcomes
    utc_ms = "datetime64[ms, UTC]"
    verdicts = fb[fb[S.OUTCOME].isin(VERDICTS)].sort_values([S.OUTCOME_AT, "order"], kind="stable")
    follow = fb[fb[S.OUTCOME].isin(FOLLOW_UPS)]

    # verdicts: one row per lead with feedback; latest feedback outcome at the earliest verdict time
    decided = verdicts[S.LEAD_ID].unique()
    export_verdict = out[S.OUTCOME].isin(VERDICTS) & out[S.LEAD_ID].isin(decided)
    first_export = out[export_verdict].groupby(S.LEAD_ID)[S.OUTCOME_AT].min()
    last_fb = verdicts.groupby(S.LEAD_ID, sort=False).tail(1).set_index(S.LEAD_ID)
    first_fb = verdicts.groupby(S.LEAD_ID)[S.OUTCOME_AT].min()
    when = pd.concat([first_fb, first_export.reindex(first_fb.index)], axis=1).min(axis=1)
    previous = (
        out[export_verdict]
        .sort_values(S.OUTCOME_AT, kind="stable")
        .groupby(S.LEAD_ID)
        .head(1)
        .set_index(S.LEAD_ID)[S.OUTCOME]
    )
    new_verdicts = pd.DataFrame(
        {
            S.LEAD_ID: first_fb.index.to_numpy(dtype=object),
            S.OUTCOME: last_fb.loc[first_fb.index, S.OUTCOME].to_numpy(dtype=object),
            S.OUTCOME_AT: when.astype(utc_ms).to_numpy(),
            S.REASON: last_fb.loc[first_fb.index, S.REASON].to_numpy(dtype=object),
        }
    )
    had = new_verdicts[S.LEAD_ID].map(previous)
    changed = int((had.notna() & (had != new_verdicts[S.OUTCOME])).sum())
    added = int(had.isna().sum())

    # follow-ups: appended, without exact duplicates of what is there already
    def key(df: pd.DataFrame) -> pd.Series:
        ms = df[S.OUTCOME_AT].astype("datetime64[ms, UTC]").astype("int64").astype(str)
        return df[S.LEAD_ID].astype(str) + "\x1f" + df[S.OUTCOME].astype(str) + "\x1f" + ms

    follow = follow.drop_duplicates([S.LEAD_ID, S.OUTCOME, S.OUTCOME_AT])
    dup = (
        key(follow).isin(set(key(out))) if len(out) and len(follow) else pd.Series(False, index=follow.index)
    )
    new_follow = follow.loc[~dup, [S.LEAD_ID, S.OUTCOME, S.OUTCOME_AT, S.REASON]]

    kept = out[~export_verdict]
    parts = [p.astype({S.OUTCOME_AT: utc_ms}) for p in (kept, new_verdicts, new_follow) if len(p)]
    merged = pd.concat(parts, ignore_index=True) if parts else kept.reset_index(drop=True)

    note = (
        f"feedback: {n_given} row(s) given; verdicts for {len(new_verdicts)} lead(s) "
        f"({changed} changed the export's verdict, {added} where the export had none); "
        f"{len(new_follow)} won/lost row(s) added, {int(dup.sum())} already in the export"
    )
    ignored = [
        (int(unknown.sum()), "for leads not in the export"),
        (int(after_snapshot.sum()), f"dated after the export's snapshot {dataset.snapshot_at}"),
        (int(before_created.sum()), "dated before their lead was created"),
    ]
    note += "".join(f"; {n} ignored {why}" for n, why in ignored if n)
    return replace(dataset, outcomes=merged, notes=(*dataset.notes, note))
