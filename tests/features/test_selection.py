"""The selection table and inverse-propensity weights: read and validated by the loader, turned into the
rows' propensities by training_rows, into clipped weights by fit_models, and a worked example of selection
bias that the weights correct."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.features.labels import QualifiedDefinition, training_rows
from leadscore.features.loading import DataError, Dataset, load_dataset
from leadscore.features.writing import write_dataset
from leadscore.model.train import TrainConfig, fit_models
from leadscore.model.training_data import label_weights, split_by_lead_time

T0 = pd.Timestamp("2025-01-01", tz="UTC")
SNAPSHOT = pd.Timestamp("2025-06-01", tz="UTC")
DEFINITION = QualifiedDefinition(
    horizon_days=30, ages_days=(1, 3, 14), at_handoff=False, age_sampling="fixed"
)


def _utc(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values), utc=True).astype("datetime64[ms, UTC]")


def small_dataset(selection: pd.DataFrame | None = None) -> Dataset:
    """Five leads: L1 handed over (qualified), L2 explored at 5 % (disqualified), L3 never handed over with no
    verdict, L4 never handed over but qualified by sales all the same, L5 not in the selection table."""
    leads = pd.DataFrame({S.LEAD_ID: [f"L{i}" for i in range(1, 6)], S.CREATED_AT: _utc([T0] * 5)})
    for c in S.LEAD_ATTRIBUTES:
        leads[c] = None
    events = pd.DataFrame(
        {
            S.LEAD_ID: ["L1"],
            S.EVENT_TYPE: ["email_sent"],
            S.TIMESTAMP: _utc([T0 + pd.Timedelta(hours=5)]),
            S.PAGE: [None],
        }
    )
    outcomes = pd.DataFrame(
        {
            S.LEAD_ID: ["L1", "L2", "L4"],
            S.OUTCOME: ["qualified", "disqualified", "qualified"],
            S.OUTCOME_AT: _utc([T0 + pd.Timedelta(days=2)] * 3),
            S.REASON: [None, "bad_fit", None],
        }
    )
    return Dataset(leads=leads, events=events, outcomes=outcomes, snapshot_at=SNAPSHOT, selection=selection)


SELECTION = pd.DataFrame(
    {
        # L1: explored at 5 % on day 1, over the threshold half a day later (a second hand-over)
        S.LEAD_ID: ["L1", "L1", "L2", "L3", "L4"],
        S.HANDED_AT: _utc(
            [T0 + pd.Timedelta(days=1), T0 + pd.Timedelta(hours=36), T0 + pd.Timedelta(days=1), None, None]
        ),
        S.PROPENSITY: [0.05, 1.0, 0.05, 0.05, 0.05],
    }
)


def test_the_selection_table_round_trips_and_is_optional(tmp_path):
    back = load_dataset(write_dataset(small_dataset(SELECTION), tmp_path / "with"))
    pd.testing.assert_frame_equal(back.selection, SELECTION, check_dtype=False)
    assert load_dataset(write_dataset(small_dataset(), tmp_path / "without")).selection is None
    # and writing a dataset without one over a directory that had one removes it
    assert load_dataset(write_dataset(small_dataset(), tmp_path / "with")).selection is None


def test_a_selection_table_from_before_version_2_is_read_with_a_warning_to_export_it_again(tmp_path):
    import json

    # given a dataset written now, and the same with a previous version's table: one row per lead, its first
    # hand-over, and a dataset.json that does not know selection_version
    now = load_dataset(write_dataset(small_dataset(SELECTION), tmp_path / "now"))
    old_dir = write_dataset(small_dataset(SELECTION.drop_duplicates(S.LEAD_ID)), tmp_path / "old")
    (old_dir / "dataset.json").write_text(json.dumps({"snapshot_at": "2025-06-01T00:00:00Z"}))
    old = load_dataset(old_dir)
    # then the current one loads quietly, the old one with a warning naming the file and what to do
    assert json.loads((tmp_path / "now" / "dataset.json").read_text())["selection_version"] == 2
    assert not any("selection" in n for n in now.notes)
    (warning,) = [n for n in old.notes if "selection" in n]
    assert warning.startswith(f"WARNING: {old_dir / 'selection.parquet'} may be a selection table written")
    assert "Export it again" in warning and '"selection_version": 2' in warning
    # and a table without the key but with a lead handed over twice is of the current layout: no warning
    (tmp_path / "now" / "dataset.json").write_text(json.dumps({"snapshot_at": "2025-06-01T00:00:00Z"}))
    assert not any("selection" in n for n in load_dataset(tmp_path / "now").notes)


def test_a_broken_selection_table_is_refused_naming_file_row_column_and_reason(tmp_path):
    out = write_dataset(small_dataset(), tmp_path / "d")
    (out / "selection.csv").write_text(
        "lead_id,handed_at,propensity\n"
        "L1,2025-01-02T00:00:00Z,1\n"
        "L1,,0.05\n"  # L1 handed over above, and never handed over here
        "L9,,0.05\n"  # not a lead of the data
        "L2,yesterday,0.05\n"  # not a time
        "L3,,1.5\n"  # not a probability
        "L4,2025-01-02T00:00:00Z,0\n"  # handed over at probability 0
        "L2,2025-01-02T01:00:00+01:00,0.05\n"  # L2's second hand-over moment: fine
        "L1,2025-01-02T01:00:00+01:00,0.5\n"  # L1's first hand-over again (another offset)
    )
    with pytest.raises(DataError) as e:
        load_dataset(out)
    got = {(p.row, p.column) for p in e.value.problems}
    assert got == {
        (2, S.LEAD_ID),
        (3, S.LEAD_ID),
        (4, S.HANDED_AT),
        (5, S.PROPENSITY),
        (6, S.PROPENSITY),
        (8, S.LEAD_ID),
    }
    text = str(e.value)
    assert (
        "row 2, column 'lead_id': duplicate row without handed_at (never handed over) for lead 'L1'" in text
    )
    assert "row 8, column 'lead_id': duplicate hand-over moment for lead 'L1'" in text
    assert "selection.csv, row 3, column 'lead_id': lead 'L9' is not in leads" in text
    assert "handed over must have a propensity above 0" in text
    (out / "selection.csv").write_text("lead_id,propensity\nL1,1\n")
    with pytest.raises(DataError, match="column 'handed_at': required column is missing"):
        load_dataset(out)


def test_rows_are_the_policys_hand_overs_and_leads_nobody_looked_at_are_unlabelled():
    plain = training_rows(small_dataset(), DEFINITION)
    rows = training_rows(small_dataset(SELECTION), DEFINITION)
    # without a selection table: every lead's rows, no propensity (L3 and L5's full horizons are negatives)
    assert "propensity" not in plain.columns and set(plain[S.LEAD_ID]) == {"L1", "L2", "L3", "L4", "L5"}
    # with one: L3 (scored, never handed over, no verdict) is left out, not a negative; L4 (a verdict without
    # the policy) and L5 (not in the table) keep their rows, weight 1
    assert set(rows[S.LEAD_ID]) == {"L1", "L2", "L4", "L5"}
    kept = rows[rows[S.LEAD_ID].isin(["L4", "L5"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        kept.drop(columns="propensity"), plain[plain[S.LEAD_ID].isin(["L4", "L5"])].reset_index(drop=True)
    )
    assert kept["propensity"].isna().all()
    # and the handed-over leads L1, L2 are learned at the moments the policy handed them over, each with its
    # own propensity and the label from that moment (their age rows are not hand-overs: not labelled)
    policy = rows[rows[S.LEAD_ID].isin(["L1", "L2"])]
    assert (policy["moment"] == "policy_handoff").all()
    assert list(
        zip(policy[S.LEAD_ID], policy["as_of"], policy["propensity"], policy["label"], strict=True)
    ) == [
        ("L1", T0 + pd.Timedelta(days=1), 0.05, 1),
        ("L2", T0 + pd.Timedelta(days=1), 0.05, 0),
        ("L1", T0 + pd.Timedelta(hours=36), 1.0, 1),
    ]
    # and the weights are 1 / propensity, clipped, 1 where unknown
    w = label_weights(rows, max_weight=20.0)
    assert w.tolist() == np.where(rows["propensity"] == 0.05, 20.0, 1.0).tolist()
    assert sorted(rows.loc[w == 20.0, S.LEAD_ID]) == ["L1", "L2"]
    assert label_weights(rows, max_weight=8.0).max() == 8.0
    assert label_weights(pd.DataFrame({"propensity": [0.5, 0.01, np.nan]}), 20.0).tolist() == [2.0, 20.0, 1.0]
    assert label_weights(plain, 20.0) is None
    # and kept for the drift histograms, L3's rows are flagged unlabelled; L1's and L2's day-1 age row is
    # their hand-over row, not a second, unlabelled one (their later age rows come after their verdicts: not
    # rows)
    every = training_rows(small_dataset(SELECTION), DEFINITION, keep_unlabelled=True)
    left_out = every[every["unlabelled"]]
    assert sorted(zip(left_out[S.LEAD_ID], left_out["moment"], strict=True)) == [
        ("L3", "age_14d"),
        ("L3", "age_1d"),
        ("L3", "age_3d"),
    ]
    pd.testing.assert_frame_equal(
        every[~every["unlabelled"]].drop(columns="unlabelled").reset_index(drop=True), rows
    )


def test_a_hand_over_after_the_verdict_or_the_snapshot_hides_none_of_the_leads_earlier_rows():
    # given L4, qualified by sales on day 2 without the policy, handed over by it on day 5 (sales' activity
    # raised its score), and L3 (no verdict) handed over only after the dataset's snapshot
    later = SELECTION.copy()
    later.loc[later[S.LEAD_ID] == "L4", [S.HANDED_AT, S.PROPENSITY]] = [T0 + pd.Timedelta(days=5), 1.0]
    later.loc[later[S.LEAD_ID] == "L3", S.HANDED_AT] = SNAPSHOT + pd.Timedelta(days=1)
    # (and L1 once more on its verdict's very moment: not a moment the policy decided anything about)
    at_verdict = pd.DataFrame({S.LEAD_ID: ["L1"], S.HANDED_AT: _utc([T0 + pd.Timedelta(days=2)])})
    later = pd.concat([later, at_verdict.assign(**{S.PROPENSITY: 1.0})], ignore_index=True)
    # when the rows are drawn, then those hand-overs change nothing: as of its verdict L4 was never handed
    # over (its rows stay, weight 1: mostly positives) and as of the snapshot neither was L3 (left out)
    for keep in (False, True):
        pd.testing.assert_frame_equal(
            training_rows(small_dataset(later), DEFINITION, keep_unlabelled=keep),
            training_rows(small_dataset(SELECTION), DEFINITION, keep_unlabelled=keep),
        )
    rows = training_rows(small_dataset(later), DEFINITION)
    assert rows.loc[rows[S.LEAD_ID] == "L4", ["moment", "label"]].values.tolist() == [["age_1d", 1]]


def _population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x: what the new model sees; z: what the old model's score rested on; y drawn from both."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(-2.0 + 1.0 * x + 1.5 * z)))).astype(np.int8)
    return x, z, y


def _fit(x, y, propensity):
    n = len(x)
    rows = pd.DataFrame(
        {
            S.LEAD_ID: [f"s{i}" for i in range(n)],
            "label": y,
            "as_of": T0 + pd.to_timedelta(np.arange(n), unit="min"),
        }
    )
    if propensity is not None:
        rows["propensity"] = propensity
    config = TrainConfig(model="scorecard", policy="f1")
    return fit_models({"x": x.astype(float)}, rows, split_by_lead_time(rows, 0.2), (), config, lambda _: None)


def test_inverse_propensity_weights_recover_the_population_that_the_handed_over_leads_misrepresent():
    # given 60,000 leads; the last model handed over those with z > 0.8 (propensity 1) and explored 10 % of
    # the others (propensity 0.1); sales gave verdicts on the handed-over leads only
    x, z, y = _population(60_000, seed=1)
    above = z > 0.8
    explored = np.random.default_rng(2).uniform(size=len(x)) < 0.1
    labelled = above | explored
    prop = np.where(above, 1.0, 0.1)[labelled]
    # when the new model (it sees x, not z) is trained on those verdicts, unweighted and weighted
    plain = _fit(x[labelled], y[labelled], None)
    weighted = _fit(x[labelled], y[labelled], prop)
    # then on a fresh population with every outcome known, the unweighted model predicts the handed-over
    # leads' rate for everyone, while the weighted one predicts the population's rate and is calibrated
    xp, _, yp = _population(60_000, seed=3)
    from leadscore.model.evaluate import ece

    p_plain = plain.model.explain({"x": xp}).probability
    p_weighted = weighted.model.explain({"x": xp}).probability
    rate, sd = yp.mean(), np.sqrt(yp.mean() * (1 - yp.mean()) / len(yp))
    assert abs(p_weighted.mean() - rate) < 0.01 + 4 * sd
    assert p_plain.mean() - rate > 0.08
    assert ece(p_weighted, yp.astype(float)) < 0.015 < 0.06 < ece(p_plain, yp.astype(float))
    # and the weighted holdout metrics estimate the population's rate (the gate judges the population)
    assert abs(weighted.metrics["positive_rate"] - rate) < 0.02
    assert plain.metrics["positive_rate"] - rate > 0.08
    assert weighted.model.info["weights"]["weighted_rows"] == int((prop < 1).sum())


def test_clipped_rows_are_those_whose_inverse_propensity_exceeds_the_clip():
    # given leads explored at 5 % (weight 20: the clip, exactly) and at 1 % (weight 100, clipped to 20)
    x, _, y = _population(4_000, seed=6)
    prop = np.where(np.arange(len(x)) % 4 == 0, 0.05, np.where(np.arange(len(x)) % 4 == 1, 0.01, 1.0))
    # when a model is trained with max_weight 20
    info = _fit(x, y, prop).model.info["weights"]
    # then only the 1 % rows count as clipped
    assert info["clipped_rows"] == int((prop == 0.01).sum()) and info["max"] == 20.0
    assert info["weighted_rows"] == int((prop < 1).sum())


def test_integer_weights_fit_and_calibrate_as_the_rows_repeated():
    # given rows with integer weights (an explored lead at 5 % stands for 20), and the rows repeated
    from leadscore.model.calibration import Platt
    from leadscore.model.encoding import Encoder
    from leadscore.model.scorecard import Scorecard

    x, _, y = _population(3_000, seed=4)
    w = np.random.default_rng(5).choice([1, 1, 2, 20], size=len(x)).astype(float)
    dup = np.repeat(np.arange(len(x)), w.astype(int))
    # (a categorical feature: a numeric one's bin edges are quantiles of the rows as they are, unweighted)
    cat = np.array([f"c{int(v)}" for v in np.clip(np.round(x * 2), -4, 4)], dtype=object)
    encoder = Encoder.fit({"x": cat}, ("x",), ("x",))
    X = encoder.transform({"x": cat})
    # when the scorecard and Platt calibration are fit with the weights and on the repeated rows
    sc_w = Scorecard.fit(X, y, encoder, seed=0, sample_weight=w)
    sc_r = Scorecard.fit(X[dup], y[dup], encoder, seed=0)
    raw = x * 1.3 - 0.4
    pl_w, pl_r = Platt.fit(raw, y, w), Platt.fit(raw[dup], y[dup])
    # then they are the same model (to the solvers' tolerance), and not the unweighted one
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(sc_w.tables, sc_r.tables, strict=False))
    assert (pl_w.a, pl_w.b) == pytest.approx((pl_r.a, pl_r.b), abs=1e-5)
    assert abs(Platt.fit(raw, y).b - pl_w.b) > 0.01
    assert not np.allclose(Scorecard.fit(X, y, encoder, seed=0).tables[0], sc_w.tables[0], atol=1e-2)
    # and weights of 1 are no weights: label_weights says so, and training then takes the unweighted path
    assert label_weights(pd.DataFrame({"propensity": [1.0, 1.0, np.nan]}), 20.0) is None


def test_drift_histograms_and_ranges_describe_every_scored_lead_not_only_the_handed_over_ones(demo_dataset):
    # given a store export where the last model handed over only the most engaged leads (propensity 1, share
    # 0)
    # and scored the others without handing them over: those have no verdict
    from leadscore.features.frames import feature_frame
    from leadscore.model.train import train

    rows = training_rows(demo_dataset, QualifiedDefinition())
    eng = feature_frame(demo_dataset, rows)["engagement_90d"].to_numpy(dtype=float)
    per_lead = pd.Series(eng).groupby(rows[S.LEAD_ID].to_numpy()).min()
    handed = per_lead.index[per_lead >= max(float(np.quantile(per_lead, 0.7)), 1.0)]
    # (the policy handed those over at every moment it scored them: their training rows' moments)
    moments = rows[rows[S.LEAD_ID].isin(handed)]
    others = per_lead.index[~per_lead.index.isin(handed)]
    selection = pd.DataFrame(
        {
            S.LEAD_ID: np.concatenate([moments[S.LEAD_ID].astype(str), others.astype(str)]),
            S.HANDED_AT: pd.concat(
                [moments["as_of"], pd.Series(pd.NaT, index=range(len(others)), dtype=moments["as_of"].dtype)],
                ignore_index=True,
            ),
            S.PROPENSITY: 1.0,
        }
    )
    outcomes = demo_dataset.outcomes[demo_dataset.outcomes[S.LEAD_ID].isin(handed)]  # sales judged only those
    ds = Dataset(
        leads=demo_dataset.leads,
        events=demo_dataset.events,
        outcomes=outcomes,
        snapshot_at=demo_dataset.snapshot_at,
        selection=selection,
    )
    # when a model is trained on it
    result = train(ds, TrainConfig(model="scorecard", features=("engagement_90d", "source")))
    info = result.model.info
    every = training_rows(ds, QualifiedDefinition(), keep_unlabelled=True)
    left_out = every["unlabelled"].to_numpy()
    # then the unlabelled rows never enter the fit, but are counted in the model's record
    assert left_out.sum() > 0 and len(result.rows) == (~left_out).sum()
    assert info["unlabelled"] == {
        "rows": int(left_out.sum()),
        "leads": int(every.loc[left_out, S.LEAD_ID].nunique()),
    }
    # and the drift histograms and training ranges cover them too: the low-engagement leads the service
    # scores every day are neither "drift" nor "out of range"
    assert info["distributions"]["n"] == int((result.rows["part"] == "fit").sum() + left_out.sum())
    all_eng = feature_frame(ds, every)["engagement_90d"].to_numpy(dtype=float)
    fit_eng = all_eng[~left_out][(result.rows["part"] == "fit").to_numpy()]
    assert info["ranges"]["engagement_90d"]["min"] == np.nanmin(all_eng) < np.nanmin(fit_eng)


def test_insights_weighted_are_those_of_the_rows_repeated_and_weights_of_one_are_none():
    from leadscore.model.insights import rates as insights

    rng = np.random.default_rng(7)
    v = rng.choice(np.array(["web", "event", "partner", None], dtype=object), size=2_000)
    y = (rng.random(len(v)) < np.where(v == "event", 0.4, 0.1)).astype(int)
    w = rng.choice([1, 1, 2, 20], size=len(v))
    dup = np.repeat(np.arange(len(v)), w)
    weighted, repeated = insights({"s": v}, y, ("s",), weight=w), insights({"s": v[dup]}, y[dup], ("s",))
    assert weighted["overall"] == pytest.approx(repeated["overall"], rel=1e-12)
    assert weighted["by_value"]["s"] == pytest.approx(repeated["by_value"]["s"], rel=1e-12)
    assert insights({"s": v}, y, ("s",), weight=np.ones(len(v))) == insights({"s": v}, y, ("s",))
