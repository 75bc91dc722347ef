"""What counts as a reason: at least one point, never a value the model did not learn from, never a value
that says nothing; and out-of-range values are flagged in the API result and the batch output."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from leadscore.features import catalog
from leadscore.features import schema as S
from leadscore.features.frames import feature_frame
from leadscore.model import persist
from leadscore.model.batch import lead_rows, score_dataset
from leadscore.model.encoding import Encoder
from leadscore.model.reasons import POINTS_PER_DOUBLING, REASON_FIELDS, top_reasons
from leadscore.model.scoring import ScoringModel

TOP = 5


@pytest.fixture(scope="module")
def snapshot_batch(trained, demo_dataset, tmp_path_factory) -> pd.DataFrame:
    """Every demo lead scored as of the data's snapshot (many are far older than any training row)."""
    out = tmp_path_factory.mktemp("reasons") / "scores.parquet"
    score_dataset(demo_dataset, trained.result.model, out, top_n=TOP)
    return pd.read_parquet(out)


@pytest.fixture(scope="module")
def snapshot_values(trained, demo_dataset) -> tuple[list[str], dict[str, np.ndarray]]:
    rows = lead_rows(demo_dataset, demo_dataset.snapshot_at)
    feats = feature_frame(demo_dataset, rows)
    return rows[S.LEAD_ID].tolist(), {n: feats[n].to_numpy() for n in trained.result.model.encoder.features}


def _without_ranges(model: ScoringModel) -> ScoringModel:
    """The same model as one trained before ranges were recorded."""
    info = {k: v for k, v in model.info.items() if k != "ranges"}
    return dataclasses.replace(model, info=info)


def test_a_contribution_under_one_point_is_not_a_reason():
    # given contributions of 0.4, 0.6, 3 and -0.45, -0.7 points on five single-feature reason groups
    names = ("lead_age_days", "activity_trend", "open_rate_30d", "click_rate_30d", "meeting_total")
    enc = Encoder(features=names, categorical=(), vocab={})
    per_point = np.log(2) / POINTS_PER_DOUBLING
    C = np.array([[0.4, 0.6, 3.0, -0.45, -0.7]]) * per_point
    X = np.array([[10.0, 0.5, 0.2, 0.1, 1.0]])
    # when the reasons are picked (the API's path and batch scoring's)
    few = top_reasons(C, X, enc)[0]
    many = top_reasons(np.repeat(C, 20, axis=0), np.repeat(X, 20, axis=0), enc)[0]
    # then only those that move the score by a point or more are reasons, and none reads "0"
    assert [(r["feature"], r["points"]) for r in few] == [
        ("open_rate_30d", 3),
        ("activity_trend", 1),
        ("meeting_total", -1),
    ]
    assert many == few


def test_no_reason_of_the_api_or_the_batch_has_zero_points(trained, snapshot_batch, snapshot_values):
    # given a real model and every demo lead at the snapshot
    model = trained.result.model
    ids, values = snapshot_values
    # when they are scored by the API's code and in batch
    api = model.results(values, ids)
    # then no reason of either has 0 points (there are thousands of reasons)
    points = [r["points"] for res in api for r in res["reasons"]]
    assert len(points) > 5 * len(api) and 0 not in points
    for side in ("pos", "neg"):
        for k in range(1, TOP + 1):
            col = snapshot_batch[f"{side}_{k}_points"].dropna()
            assert (col != 0).all() and ((col > 0) if side == "pos" else (col < 0)).all()


def test_training_records_each_numeric_feature_range_and_persists_it(trained, tmp_path):
    # given the trained model (its fit rows: features of training rows, see TrainResult.rows)
    model = trained.result.model
    ranges = model.info["ranges"]
    # then every numeric feature has its range, categoricals none
    numeric = [f for f in model.encoder.features if f not in model.encoder.vocab]
    assert set(ranges) == set(numeric)
    assert all(r["min"] <= r["max"] for r in ranges.values())
    assert ranges["lead_age_days"]["min"] >= 0 and ranges["open_rate_30d"]["max"] <= 1
    # and the holdout (later leads, not fit on) lies mostly inside it, but not necessarily all of it
    age = trained.result.holdout_values["lead_age_days"]
    assert np.mean((age >= ranges["lead_age_days"]["min"]) & (age <= ranges["lead_age_days"]["max"])) > 0.95
    # and it survives saving and loading
    assert persist.load(persist.save(model, tmp_path / "m")).info["ranges"] == ranges


def test_values_outside_the_training_range_are_flagged_and_never_a_reason(trained, snapshot_values):
    # given leads at the snapshot, some older than any lead the model was fit on
    model = trained.result.model
    ids, values = snapshot_values
    low, high = model.info["ranges"]["lead_age_days"]["min"], model.info["ranges"]["lead_age_days"]["max"]
    floor = min(low, 0.0)  # an age is never negative: a lead scored as it arrives (age 0) is in range
    old = values["lead_age_days"] > high
    assert 0 < old.sum() < len(ids)
    # when they are scored, with every contribution
    res = model.results(values, ids, explain_full=True)
    before = _without_ranges(model).results(values, ids, explain_full=True)
    for r, b, age in zip(res, before, values["lead_age_days"], strict=False):
        # then the score and the exact contributions are those of the same model without ranges
        assert (r["probability"], r["score"], r["explanation"]) == (
            b["probability"],
            b["score"],
            b["explanation"],
        )
        assert b["out_of_range"] == []  # an older model flags nothing and still scores
        flagged = [f for f in r["out_of_range"] if f["feature"] == "lead_age_days"]
        if not floor <= age <= high:
            # and a lead older (or newer) than any the model was fit on is flagged, in words, and its age is
            # not a reason either way
            words = "older" if age > high else "newer"
            assert flagged == [
                {
                    "feature": "lead_age_days",
                    "label": "Lead age in days",
                    "value": int(age),
                    "trained_min": low,
                    "trained_max": high,
                    "message": f"Lead is {int(age)} day{'' if age == 1 else 's'} old: {words} than any "
                    f"lead the model learned from ({low:.0f} to {high:.0f} days)",
                }
            ]
            assert "lead_age_days" not in [x["feature"] for x in r["reasons"]]
        else:
            assert flagged == []
        for f in r["out_of_range"]:
            assert not min(f["trained_min"], 0.0) <= f["value"] <= f["trained_max"]
            assert f["feature"] not in [x["feature"] for x in r["reasons"]]
    # and the other reasons stay: leads that lost their age reason keep the rest
    assert sum(1 for r, o in zip(res, old, strict=False) if o and r["reasons"]) == old.sum()


def test_batch_output_flags_out_of_range_values_like_the_api(trained, snapshot_batch, snapshot_values):
    # given every demo lead scored in batch as of the snapshot, and by the API's code
    model = trained.result.model
    ids, values = snapshot_values
    api = model.results(values, ids)
    batch = snapshot_batch.set_index(S.LEAD_ID).loc[ids]
    # then each row's out-of-range columns say what the API's out_of_range says
    for r, (_, row) in zip(api, batch.iterrows(), strict=False):
        flags = r["out_of_range"]
        assert (row["out_of_range"] if isinstance(row["out_of_range"], str) else None) == (
            ", ".join(f["feature"] for f in flags) or None
        )
        assert (row["out_of_range_text"] if isinstance(row["out_of_range_text"], str) else None) == (
            "; ".join(f["message"] for f in flags) or None
        )
    # and no lead reads "Lead is N days old" with N beyond the oldest lead the model learned from
    high = model.info["ranges"]["lead_age_days"]["max"]
    texts = pd.concat(
        [snapshot_batch[f"{s}_{k}_text"] for s in ("pos", "neg") for k in range(1, TOP + 1)]
    ).dropna()
    ages = texts.str.extract(r"^Lead is (\d+) days? old$")[0].dropna().astype(int)
    assert len(ages) > 0 and ages.max() <= high
    assert (
        snapshot_batch["out_of_range_text"].str.contains("older than any lead the model learned from").any()
    )


def test_a_value_that_says_nothing_is_not_a_reason(trained, snapshot_values):
    # given leads whose activity trend is exactly 0 (no change: usually no activity at all)
    model = trained.result.model
    ids, values = snapshot_values
    zero = values["activity_trend"] == 0
    assert zero.sum() > 100
    ex = model.explain(values)
    j = model.encoder.features.index("activity_trend")
    assert (
        np.abs(ex.contributions[zero, j]).max() > np.log(2) / POINTS_PER_DOUBLING
    )  # the model gives it points
    # when they are scored
    res = model.results(values, ids)
    # then the zero trend is never a reason, while a non-zero trend can be, read as a sentence about change
    trend = [
        (z, x)
        for r, z in zip(res, zero, strict=False)
        for x in r["reasons"]
        if x["feature"] == "activity_trend"
    ]
    assert trend and not [x for z, x in trend if z]
    assert all(
        re.match(
            r"^[\d.]+ (more|fewer) interactions? a day in the last 7 days than in the 23 days before$",
            x["text"],
        )
        for _, x in trend
    ), trend[:3]
    for spec in catalog.FEATURES:  # no sentence of the catalogue reads a bare "0" trend
        if spec.name.endswith("trend"):
            assert spec.quiet_at_zero


def test_the_docs_quote_the_minimum_impact_of_a_reason():
    from leadscore.model.reason_groups import MIN_ABS_IMPACT
    from support import REPO

    doc = " ".join((REPO / "docs" / "models.md").read_text().split())
    quoted = re.findall(r"below half a point, ([\d.]+) in log-odds", doc)
    assert quoted == [f"{MIN_ABS_IMPACT:.4f}"]


def test_reasons_as_fields_are_the_served_reasons_values_in_the_score_logs_order(trained, snapshot_values):
    # given a real model and demo leads: many (the arrays' path) and a request's few (the direct path)
    model = trained.result.model
    ids, values = snapshot_values
    few = {k: v[:3] for k, v in values.items()}
    for lead_ids, vals in ((ids, values), (ids[:3], few)):
        # when they are scored with reasons as served and with reasons as field tuples (a bulk rescore)
        served = model.results(vals, lead_ids, out_of_range=False)
        fields = model.results(vals, lead_ids, out_of_range=False, reason_fields=True)
        # then each reason is the tuple of the served reason's values in REASON_FIELDS order, and the
        # rest of every result is the same
        assert [r["reasons"] for r in fields] == [
            [tuple(x[k] for k in REASON_FIELDS) for x in r["reasons"]] for r in served
        ]
        assert all(isinstance(x, tuple) for r in fields for x in r["reasons"])
        assert [{**r, "reasons": None} for r in fields] == [{**r, "reasons": None} for r in served]
    assert sum(len(r["reasons"]) for r in served) > 0
