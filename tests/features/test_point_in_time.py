"""Point-in-time correctness: a feature for a moment never sees anything stamped at or after it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.features.frames import feature_frame
from leadscore.features.labels import QualifiedDefinition, sampled_ages, training_rows
from leadscore.features.loading import Dataset


def _rows(dataset: Dataset, n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    leads = dataset.leads.sample(n, random_state=seed)
    ages = pd.to_timedelta(rng.uniform(0.5, 90, n), unit="D").round("s")
    return pd.DataFrame(
        {
            S.LEAD_ID: leads[S.LEAD_ID].to_numpy(),
            "as_of": (leads[S.CREATED_AT] + ages).astype("datetime64[ms, UTC]").to_numpy(),
        }
    )


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype == object:
            assert list(x) == list(y), col
        else:
            np.testing.assert_array_equal(x, y, err_msg=col)


def test_future_events_and_outcomes_change_nothing(demo_dataset):
    # given rows at random moments and the features computed from the data as it is
    rows = _rows(demo_dataset)
    before = feature_frame(demo_dataset, rows)
    # when we add, for every row's lead, a burst of events exactly at and after its as_of moment,
    # and outcomes after it
    rng = np.random.default_rng(1)
    extra = []
    for lead_id, as_of in zip(rows[S.LEAD_ID], rows["as_of"], strict=False):
        for k, etype in enumerate(rng.choice(S.EVENT_TYPES, 6)):
            page = rng.choice(S.PAGE_KINDS) if etype == "web_visit" else None
            extra.append(
                {
                    S.LEAD_ID: lead_id,
                    S.EVENT_TYPE: etype,
                    S.TIMESTAMP: as_of + pd.Timedelta(hours=k),
                    S.PAGE: page,
                }
            )
    events = pd.concat(
        [demo_dataset.events, pd.DataFrame(extra).astype(demo_dataset.events.dtypes.to_dict())],
        ignore_index=True,
    )
    outcomes = pd.concat(
        [
            demo_dataset.outcomes,
            pd.DataFrame(
                {
                    S.LEAD_ID: rows[S.LEAD_ID],
                    S.OUTCOME: "qualified",
                    S.OUTCOME_AT: rows["as_of"],
                    S.REASON: None,
                }
            ),
        ],
        ignore_index=True,
    )
    after = feature_frame(Dataset(demo_dataset.leads, events, outcomes, demo_dataset.snapshot_at), rows)
    # then no value changes
    _assert_same(before, after)


def test_an_event_just_before_as_of_is_seen(demo_dataset):
    # given rows and one extra pricing visit one millisecond before each as_of
    rows = _rows(demo_dataset, n=50, seed=3)
    before = feature_frame(demo_dataset, rows)
    extra = pd.DataFrame(
        {
            S.LEAD_ID: rows[S.LEAD_ID],
            S.EVENT_TYPE: "web_visit",
            S.TIMESTAMP: rows["as_of"] - pd.Timedelta(milliseconds=1),
            S.PAGE: "pricing",
        }
    )
    events = pd.concat(
        [demo_dataset.events, extra.astype(demo_dataset.events.dtypes.to_dict())], ignore_index=True
    )
    # when features are recomputed
    after = feature_frame(
        Dataset(demo_dataset.leads, events, demo_dataset.outcomes, demo_dataset.snapshot_at), rows
    )
    # then the visit counts in every window and "days since" reflect it
    np.testing.assert_array_equal(after["visit_pricing_7d"], before["visit_pricing_7d"] + 1)
    np.testing.assert_array_equal(after["web_visit_30d"], before["web_visit_30d"] + 1)
    assert (after["days_since_visit_pricing"] == 0).all()
    assert (after["days_since_high_intent"] == 0).all()


def test_training_rows_follow_the_definition(demo_dataset):
    # given the default qualified-lead definition
    d = QualifiedDefinition()
    rows = training_rows(demo_dataset, d)
    horizon = pd.Timedelta(days=d.horizon_days)
    out = demo_dataset.outcomes
    first_res = out[out[S.OUTCOME].isin(d.positive + d.negative)].groupby(S.LEAD_ID)[S.OUTCOME_AT].min()
    # then no row is for a lead already resolved at its moment, or for a moment after the snapshot
    res = rows[S.LEAD_ID].map(first_res)
    assert not (res <= rows["as_of"]).any()
    assert (rows["as_of"] <= demo_dataset.snapshot_at).all()
    # and every row's horizon is complete (censored rows are left out, positives included)
    assert (rows["as_of"] + horizon <= demo_dataset.snapshot_at).all()
    # and every positive has a positive outcome in (as_of, as_of + horizon]
    pos = rows[rows["label"] == 1].merge(out[out[S.OUTCOME].isin(d.positive)], on=S.LEAD_ID)
    ok = pos[(pos[S.OUTCOME_AT] > pos["as_of"]) & (pos[S.OUTCOME_AT] <= pos["as_of"] + horizon)]
    assert ok.groupby(["lead_id", "as_of"]).ngroups == int((rows["label"] == 1).sum())
    # and the moments are one sampled age per stratum of the configured ages, and the handoff
    strata = dict(sampled_ages(demo_dataset.leads[S.LEAD_ID], d))
    assert set(rows["moment"]) <= set(strata) | {"handoff"}
    assert (rows["moment"] == "handoff").any()
    age_rows = rows[rows["moment"] != "handoff"]
    age = age_rows["as_of"] - age_rows[S.LEAD_ID].map(demo_dataset.leads.set_index(S.LEAD_ID)[S.CREATED_AT])
    assert (age.dt.total_seconds() % 86400 == 0).all()  # whole days, where the demo oracle is exact
    assert age.dt.days.nunique() > 40  # spread over the strata, not a handful of fixed ages


def test_censored_rows_are_left_out_positives_included(demo_dataset):
    # given a long horizon, so that many recent rows cannot be complete
    d = QualifiedDefinition(horizon_days=120)
    candidates = training_rows(demo_dataset, QualifiedDefinition(horizon_days=1))
    rows = training_rows(demo_dataset, d)
    # then no row with an incomplete horizon is kept, even one whose lead already qualified early
    assert (rows["as_of"] + pd.Timedelta(days=120) <= demo_dataset.snapshot_at).all()
    late = candidates[candidates["as_of"] + pd.Timedelta(days=120) > demo_dataset.snapshot_at]
    assert len(late) > 100  # there were such rows to leave out
    # and so the positive rate of the most recent rows is not inflated by early outcomes
    recent = rows[rows["as_of"] >= rows["as_of"].quantile(0.8)]
    assert recent["label"].mean() < 2 * rows["label"].mean()


def test_definition_rejects_nonsense():
    with pytest.raises(ValueError, match="unknown outcome"):
        QualifiedDefinition(positive=("qualifed",))
    with pytest.raises(ValueError, match="both positive and negative"):
        QualifiedDefinition(positive=("qualified",), negative=("qualified",))
    with pytest.raises(ValueError, match="horizon"):
        QualifiedDefinition(horizon_days=0)


def test_stratified_ages_are_reproducible_and_fixed_ages_are_exact(demo_dataset):
    ids = demo_dataset.leads[S.LEAD_ID]
    a = sampled_ages(ids, QualifiedDefinition())
    b = sampled_ages(ids.iloc[::-1].reset_index(drop=True), QualifiedDefinition())
    # the same lead gets the same ages whatever the row order; another seed gives others
    first = dict(zip(ids, a[2][1], strict=False))
    assert all(first[i] == v for i, v in zip(ids.iloc[::-1], b[2][1], strict=False))
    c = sampled_ages(ids, QualifiedDefinition(seed=1))
    assert (a[2][1] != c[2][1]).any()
    # ages stay inside their stratum
    for (name, ages), (lo, hi) in zip(
        a, [(1, 3), (3, 7), (7, 14), (14, 30), (30, 60), (60, 120)], strict=False
    ):
        assert ages.min() >= lo and ages.max() < hi, name
    fixed = sampled_ages(ids, QualifiedDefinition(age_sampling="fixed"))
    assert [int(ages[0]) for _, ages in fixed] == [1, 3, 7, 14, 30, 60]


def test_leads_without_any_resolving_outcome_get_their_rows_all_negative(demo_dataset):
    from dataclasses import replace

    # given only the demo leads that never resolved, as a lead-hash partition on Spark (or a new export)
    # can hold: the outcomes table has no row that resolves any of them
    d = QualifiedDefinition()
    out = demo_dataset.outcomes
    resolved = set(out.loc[out[S.OUTCOME].isin(d.positive + d.negative), S.LEAD_ID])
    keep = ~demo_dataset.leads[S.LEAD_ID].isin(resolved)
    part = replace(
        demo_dataset,
        leads=demo_dataset.leads[keep].reset_index(drop=True),
        events=demo_dataset.events[~demo_dataset.events[S.LEAD_ID].isin(resolved)].reset_index(drop=True),
        outcomes=out[~out[S.LEAD_ID].isin(resolved)].reset_index(drop=True),
    )
    assert part.outcomes[S.OUTCOME].isin(d.positive + d.negative).sum() == 0 and keep.sum() > 100
    # when its training rows are built
    rows = training_rows(part, d)
    # then they are the rows those leads have in the whole data (same snapshot), every one negative
    whole = training_rows(demo_dataset, d)
    want = whole[~whole[S.LEAD_ID].isin(resolved)].reset_index(drop=True)
    assert len(rows) > 0 and (rows["label"] == 0).all()
    pd.testing.assert_frame_equal(
        rows.assign(lead_id=rows[S.LEAD_ID].astype(str)), want.assign(lead_id=want[S.LEAD_ID].astype(str))
    )
