"""Training rows and labels: which (lead, moment) pairs a model learns from and what sales later said.

The qualified-lead definition is one frozen object, logged with every MLflow run, so a model says which
definition of "qualified" it learned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from leadscore.features import schema as S
from leadscore.features.catalog import DAY_MS
from leadscore.features.loading import Dataset
from leadscore.features.reading import repeats


@dataclass(frozen=True, slots=True)
class QualifiedDefinition:
    """P(qualified within `horizon_days`) as a learning target.

    A row's label is positive when a `positive` outcome falls in (as_of, as_of + horizon]; negative when a
    `negative` one does, or when the whole horizon passed before the data's snapshot with nothing positive.
    A row whose horizon is not complete is censored: left out, not a negative (and not kept when an outcome
    came early, which would bias recent rows towards fast outcomes).
    """

    horizon_days: int = 30
    positive: tuple[str, ...] = ("qualified", "opportunity", "won")
    negative: tuple[str, ...] = ("disqualified", "lost")
    ages_days: tuple[int, ...] = (1, 3, 7, 14, 30, 60)
    at_handoff: bool = True
    age_sampling: str = "stratified"  # or "fixed"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.horizon_days < 1:
            raise ValueError("horizon_days must be at least 1")
        unknown = set(self.positive + self.negative) - set(S.OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcome values {sorted(unknown)}; allowed: {S.OUTCOMES}")
        if set(self.positive) & set(self.negative):
            raise ValueError("an outcome cannot be both positive and negative")
        if not self.ages_days and not self.at_handoff:
            raise ValueError("no as-of moments: give ages_days or at_handoff")
        if self.age_sampling not in ("stratified", "fixed"):
            raise ValueError("age_sampling must be 'stratified' or 'fixed'")
        if list(self.ages_days) != sorted(set(self.ages_days)) or (self.ages_days and self.ages_days[0] < 0):
            raise ValueError("ages_days must be increasing, non-negative whole days")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualifiedDefinition:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fields)


def _strata(ages: tuple[int, ...]) -> list[tuple[int, int]]:
    """[a_i, a_i+1) for consecutive ages, and [a_last, 2 * a_last) for the last one."""
    edges = list(ages) + [max(2 * ages[-1], ages[-1] + 1)]
    return [(lo, max(hi, lo + 1)) for lo, hi in zip(edges[:-1], edges[1:], strict=False)]


def sampled_ages(lead_ids: pd.Series, definition: QualifiedDefinition) -> list[tuple[str, np.ndarray]]:
    """(moment name, age in whole days per lead) for each as-of moment of the definition.

    "fixed": exactly the ages in `ages_days`. "stratified" (default): one age per stratum between
    consecutive ages, drawn per lead from a hash of (seed, lead_id, stratum), so it is reproducible and
    independent of row order. Fixed ages would let a model tell a handoff row (any other age) from an age
    row by the lead's age alone, and learn the sampling design instead of the leads.
    """
    if definition.age_sampling == "fixed":
        return [(f"age_{a}d", np.full(len(lead_ids), a, dtype=np.int64)) for a in definition.ages_days]
    out = []
    for k, (lo, hi) in enumerate(_strata(definition.ages_days)):
        salted = lead_ids.astype(str) + f"|{definition.seed}|{k}"
        u = pd.util.hash_pandas_object(salted, index=False).to_numpy() / np.float64(2**64)
        out.append((f"age_{lo}-{hi - 1}d", lo + np.floor(u * (hi - lo)).astype(np.int64)))
    return out


def age_probability(definition: QualifiedDefinition, age_days: np.ndarray) -> np.ndarray:
    """P(a lead's sampled ages include `age_days`), per whole-day age, as `sampled_ages` draws them: 1 or 0
    for "fixed", 1 / (stratum width) inside a stratum for "stratified" (the hash is independent of the lead).
    """
    age = np.asarray(age_days)
    if definition.age_sampling == "fixed":
        return np.isin(age, definition.ages_days).astype(np.float64)
    out = np.zeros(age.shape, dtype=np.float64)
    for lo, hi in _strata(definition.ages_days):
        out[(age >= lo) & (age < hi)] = 1.0 / (hi - lo)
    return out


def as_of_moments(dataset: Dataset, definition: QualifiedDefinition) -> pd.DataFrame:
    """Candidate rows: each lead at each sampled age, and at its first handoff to sales."""
    leads = dataset.leads[[S.LEAD_ID, S.CREATED_AT]]
    ids = leads[S.LEAD_ID].to_numpy(dtype=object)
    created_ms = (
        leads[S.CREATED_AT].astype("datetime64[ms, UTC]").to_numpy(dtype="datetime64[ms]").astype(np.int64)
    )
    id_parts, ms_parts, moment_parts = [], [], []
    for name, ages in sampled_ages(leads[S.LEAD_ID], definition):
        id_parts.append(ids)
        ms_parts.append(created_ms + ages * DAY_MS)
        moment_parts.append(np.full(len(ids), name, dtype=object))
    if definition.at_handoff:
        ev = dataset.events
        handoff = ev[(ev[S.EVENT_TYPE] == "handed_to_sales").to_numpy()]
        handoff = handoff.groupby(S.LEAD_ID, sort=False, observed=True)[S.TIMESTAMP].min()
        id_parts.append(handoff.index.to_numpy(dtype=object))
        ms_parts.append(
            handoff.astype("datetime64[ms, UTC]").to_numpy(dtype="datetime64[ms]").astype(np.int64)
        )
        moment_parts.append(np.full(len(handoff), "handoff", dtype=object))
    all_ids = np.concatenate(id_parts) if id_parts else np.empty(0, dtype=object)
    all_ms = np.concatenate(ms_parts) if ms_parts else np.empty(0, dtype=np.int64)
    # a handoff can fall exactly on an age moment: one row per (lead, moment), named for the handoff (the
    # last such row is kept, as drop_duplicates(keep="last") would)
    codes = pd.factorize(all_ids, use_na_sentinel=False)[0].astype(np.int64)
    keep = np.flatnonzero(~repeats(codes[::-1].copy(), all_ms[::-1].copy())[::-1])
    as_of = pd.Series(all_ms[keep].astype("datetime64[ms]")).dt.tz_localize("UTC")
    return pd.DataFrame(
        {
            S.LEAD_ID: pd.Series(all_ids[keep], dtype=leads[S.LEAD_ID].dtype),
            "as_of": as_of,
            "moment": pd.Series(np.concatenate(moment_parts)[keep] if moment_parts else [], dtype=str),
        }
    )


def label_rows(dataset: Dataset, rows: pd.DataFrame, definition: QualifiedDefinition) -> pd.DataFrame:
    """Label `rows` (lead_id, as_of); drop resolved-before, future and censored rows. Adds `label` (0/1)."""
    horizon = pd.Timedelta(days=definition.horizon_days)
    out = dataset.outcomes
    resolving = out[out[S.OUTCOME].isin(definition.positive + definition.negative)]
    first_resolution = resolving.groupby(S.LEAD_ID)[S.OUTCOME_AT].min()
    rows = rows[rows["as_of"] <= dataset.snapshot_at].copy()
    if len(first_resolution):  # pandas cannot map through an empty datetime Series: nothing resolved
        resolved_at = rows[S.LEAD_ID].map(first_resolution)
        rows = rows[~(resolved_at <= rows["as_of"])]

    pairs = rows.reset_index()[["index", S.LEAD_ID, "as_of"]].merge(
        resolving[[S.LEAD_ID, S.OUTCOME, S.OUTCOME_AT]], on=S.LEAD_ID
    )
    in_window = pairs[
        (pairs[S.OUTCOME_AT] > pairs["as_of"]) & (pairs[S.OUTCOME_AT] <= pairs["as_of"] + horizon)
    ]
    pos = pd.Index(in_window.loc[in_window[S.OUTCOME].isin(definition.positive), "index"].unique())
    # Censoring: a row whose horizon runs past the snapshot is left out, whether or not an outcome already
    # came. Keeping the ones that resolved early would keep fast positives and drop slow ones: the most
    # recent rows (exactly the holdout) would look far more often qualified than they are.
    complete = (rows["as_of"] + horizon <= dataset.snapshot_at).to_numpy()
    label = np.zeros(len(rows), dtype=np.int8)
    label[rows.index.isin(pos)] = 1
    rows["label"] = label
    return rows[complete].reset_index(drop=True)


POLICY_HANDOFF = "policy_handoff"  # the `moment` of a row at which the handoff policy handed its lead over


def with_propensity(
    dataset: Dataset, rows: pd.DataFrame, definition: QualifiedDefinition, keep_unlabelled: bool = False
) -> pd.DataFrame:
    """The labelled `rows` as the handoff policy let them be observed, when the dataset has a selection table
    (docs/models.md, "Exploration and inverse-propensity weights"), with the `propensity` each label came
    through:

    - a lead the policy handed over: its labelled rows are the moments the policy handed it over (the
      table's `handed_at` rows: `moment` "policy_handoff", labelled by `label_rows` as any row), each with
      its own propensity (training weights it by the inverse). Its other rows (the sampled ages, a CRM
      hand-over) are moments at which the policy did not hand it over: whether they got a label was decided
      by what happened after them, so they are unlabelled;
    - a lead the policy scored but never handed over (or only at or after its first verdict, or after the
      dataset's snapshot: as of then, never), with no verdict (no outcome in the definition's
      `positive` or `negative` lists): its rows are unlabelled. Nobody looked at it, so "nothing positive
      within the horizon" says nothing about it: the target is "qualified if handed over", learned from the
      hand-overs, weighted to stand for every moment the policy scored;
    - a lead scored but never handed over that has a verdict all the same (sales took it up by another way),
      and a lead absent from the table (e.g. from a CRM export): its rows as they are, `propensity` NaN
      (weight 1).

    Unlabelled rows are left out; with `keep_unlabelled` they are kept, flagged in an `unlabelled` column
    (their `label` says nothing), so training can describe all the leads it scores: drift histograms and
    feature ranges; they never enter the fit. Without a selection table the rows are returned as they are (no
    `propensity` column)."""
    sel = dataset.selection
    if sel is None:
        return rows
    out = dataset.outcomes
    resolving = out[out[S.OUTCOME].isin(definition.positive + definition.negative)]
    decided = pd.Index(resolving[S.LEAD_ID].astype(str))
    # A hand-over counts only before the lead's first verdict and by the snapshot (as monitoring counts
    # them): one after it decided nothing the data knows (sales had judged the lead; the snapshot did not
    # see it), and letting it make the lead "handed" would unlabel its earlier rows because of a later
    # decision. As of then, the lead was never handed over.
    first_verdict = resolving.groupby(resolving[S.LEAD_ID].astype(str))[S.OUTCOME_AT].min()
    handed = sel[sel[S.HANDED_AT].notna()]
    verdict_at = first_verdict.reindex(handed[S.LEAD_ID].astype(str)).to_numpy()
    at = handed[S.HANDED_AT].to_numpy()
    handed = handed[(handed[S.HANDED_AT] <= dataset.snapshot_at).to_numpy() & ~(verdict_at <= at)]
    handed_ids = pd.Index(handed[S.LEAD_ID].astype(str).unique())
    never = pd.Index(sel[S.LEAD_ID].astype(str).unique()).difference(handed_ids)
    moments = pd.DataFrame(
        {
            S.LEAD_ID: handed[S.LEAD_ID].astype(rows[S.LEAD_ID].dtype).reset_index(drop=True),
            "as_of": handed[S.HANDED_AT].astype("datetime64[ms, UTC]").reset_index(drop=True),
            "moment": POLICY_HANDOFF,
            "propensity": handed[S.PROPENSITY].to_numpy(dtype=np.float64),
        }
    ).drop_duplicates([S.LEAD_ID, "as_of"], ignore_index=True)
    moments = label_rows(dataset, moments, definition)
    ids = rows[S.LEAD_ID].astype(str)
    unlabelled = (ids.isin(handed_ids) | (ids.isin(never) & ~ids.isin(decided))).to_numpy()
    rest = rows.assign(propensity=np.nan)
    if keep_unlabelled:
        # a candidate row at a hand-over moment is that moment's labelled row, not a second, unlabelled one
        at = pd.MultiIndex.from_arrays([moments[S.LEAD_ID].astype(str), moments["as_of"]])
        same = pd.MultiIndex.from_arrays([ids, rows["as_of"]]).isin(at)
        rest = rest.assign(unlabelled=unlabelled)[~(unlabelled & same)]
        moments = moments.assign(unlabelled=False)
    else:
        rest = rest[~unlabelled]
    return pd.concat([rest, moments], ignore_index=True)[list(rest.columns)]


def training_rows(
    dataset: Dataset, definition: QualifiedDefinition, keep_unlabelled: bool = False
) -> pd.DataFrame:
    """Labelled rows (lead_id, as_of, moment, label) for `definition`, sorted by as_of; with `propensity`
    when the dataset has a selection table (`with_propensity`, which also says what `keep_unlabelled`
    does)."""
    rows = with_propensity(
        dataset,
        label_rows(dataset, as_of_moments(dataset, definition), definition),
        definition,
        keep_unlabelled,
    )
    return rows.sort_values(["as_of", S.LEAD_ID], kind="stable", ignore_index=True)
