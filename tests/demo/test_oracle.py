"""Tests for the exact ground-truth oracle (leadscore.demo.oracle)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.demo.generate import generate
from leadscore.demo.isotime import parse_iso_utc_ms
from leadscore.demo.oracle import oracle_probabilities
from leadscore.demo.params import DemoParams, DriftParams

N = 20_000
H = 30
AGES = (1, 3, 7, 14, 30)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle") / "d"
    info = generate(out, N, seed=3)
    leads = pd.read_parquet(out / "leads.parquet")
    outcomes = pd.read_parquet(out / "outcomes.parquet")
    created = pd.to_datetime(parse_iso_utc_ms(leads.created_at.tolist()), unit="ms", utc=True)
    snap = pd.Timestamp(info.snapshot_at)
    rows = pd.concat(
        [pd.DataFrame({"lead_id": leads.lead_id, "as_of": created + pd.Timedelta(days=a)}) for a in AGES],
        ignore_index=True,
    )
    rows = rows[rows.as_of + pd.Timedelta(days=H) <= snap]
    rows.index = rows.index * 3 + 11  # a non-trivial index the result must align with
    q = outcomes[outcomes.outcome == "qualified"]
    q_at = pd.Series(pd.to_datetime(parse_iso_utc_ms(q["at"].tolist()), unit="ms", utc=True), index=q.lead_id)
    t = rows.lead_id.map(q_at)
    y = (t > rows.as_of) & (t <= rows.as_of + pd.Timedelta(days=H))
    probs = oracle_probabilities(out, rows, horizon_days=H)
    return out, rows, y, probs


def _check_calibration(p: pd.Series, y: pd.Series, lead: pd.Series) -> None:
    df = pd.DataFrame({"p": p, "y": y.astype(float), "lead": lead})
    df["dec"] = pd.qcut(df.p.rank(method="first"), 10, labels=False)
    for _, g in df.groupby("dec"):
        n = len(g)
        # binomial standard error of the decile's label rate given the predicted probabilities, and a
        # cluster-robust one (rows of the same lead at different ages are correlated): use the larger
        se_binom = np.sqrt((g.p * (1 - g.p)).sum()) / n
        se_cluster = np.sqrt(((g.y - g.p).groupby(g.lead).sum() ** 2).sum()) / n
        gap = abs(g.y.mean() - g.p.mean())
        assert gap < 4 * max(se_binom, se_cluster) + 1e-3, (g.p.mean(), g.y.mean(), n)


def test_result_aligned_and_in_range(data):
    _, rows, _, probs = data
    # then the result is aligned with the rows' index, with the probability columns (training only when a
    # qualified-lead definition is given)
    assert list(probs.columns) == ["observable", "handoff", "hidden"] and probs.index.equals(rows.index)
    for col in probs:
        v = probs[col].dropna()
        assert ((v >= 0) & (v <= 1)).all()
    # and NaN exactly where the lead was resolved before as_of (both columns agree on it)
    assert probs.observable.isna().equals(probs.hidden.isna())
    assert 0.02 < probs.observable.isna().mean() < 0.2


def test_rates_in_the_designed_range(data):
    _, _, y, probs = data
    ok = probs.observable.notna()
    # then the positive rate is in the tuned range (see docs/demo-data.md)
    assert 0.06 < y[ok].mean() < 0.16


def test_observable_oracle_is_calibrated(data):
    _, rows, y, probs = data
    ok = probs.observable.notna()
    _check_calibration(probs.observable[ok], y[ok], rows.lead_id[ok])


def test_hidden_oracle_is_calibrated(data):
    _, rows, y, probs = data
    ok = probs.hidden.notna()
    _check_calibration(probs.hidden[ok], y[ok], rows.lead_id[ok])


def test_hidden_beats_observable(data):
    _, _, y, probs = data
    ok = probs.observable.notna()
    auc_obs = roc_auc_score(y[ok], probs.observable[ok])
    auc_hid = roc_auc_score(y[ok], probs.hidden[ok])
    assert 0.78 < auc_obs < 0.93
    assert auc_hid > auc_obs + 0.03


def test_observable_oracle_is_point_in_time(data, tmp_path):
    # given one row per lead for a sample of leads, at various ages
    out, rows, _, probs = data
    rng = np.random.default_rng(0)
    sample = rows.loc[rng.choice(rows.index, 600, replace=False)].drop_duplicates("lead_id")
    # when every event/outcome stamped at or after the row's as_of is deleted from the files
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    as_of_ms = pd.Series(
        sample.as_of.dt.tz_localize(None).astype("datetime64[ms]").astype(np.int64).to_numpy(),
        index=sample.lead_id,
    )
    for name, col in (("events.parquet", "timestamp"), ("outcomes.parquet", "at")):
        t = pq.read_table(out / name).to_pandas()
        t = t[t.lead_id.isin(sample.lead_id)]
        keep = parse_iso_utc_ms(t[col].tolist()) < as_of_ms[t.lead_id].to_numpy()
        assert (~keep).any()
        pq.write_table(pa.Table.from_pandas(t[keep], preserve_index=False), cut / name)
    # then the observable oracle is unchanged (the hidden one reads the ground truth, also unchanged)
    again = oracle_probabilities(cut, sample, horizon_days=H)
    np.testing.assert_allclose(again.observable, probs.observable.loc[sample.index], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(again.hidden, probs.hidden.loc[sample.index])


def test_observable_depends_on_events(data, tmp_path):
    # given the same rows; when all events are deleted
    out, rows, _, probs = data
    sample = rows.iloc[:2000]
    cut = tmp_path / "noev"
    shutil.copytree(out, cut)
    ev = pq.read_table(out / "events.parquet")
    pq.write_table(ev.slice(0, 0), cut / "events.parquet")
    again = oracle_probabilities(cut, sample, horizon_days=H)
    # then the observable oracle changes (it does use the events); at age 1 day without events it is
    # still a valid probability
    ok = probs.observable.loc[sample.index].notna()
    assert not np.allclose(again.observable[ok], probs.observable.loc[sample.index][ok])


def test_rows_before_creation_are_nan(data):
    out, rows, _, _ = data
    r = rows.iloc[:5].assign(as_of=rows.as_of.iloc[:5] - pd.Timedelta(days=400))
    p = oracle_probabilities(out, r, horizon_days=H)
    assert p.observable.isna().all() and p.hidden.isna().all()


# The training rows of the default qualified-lead definition: sampled ages and each lead's first hand-over.
@pytest.fixture(scope="module")
def training(data):
    from leadscore.features.labels import QualifiedDefinition, training_rows
    from leadscore.features.loading import load_dataset

    out = data[0]
    dataset = load_dataset(out)
    definition = QualifiedDefinition()
    rows = training_rows(dataset, definition)
    probs = oracle_probabilities(out, rows[["lead_id", "as_of"]], definition=definition)
    return dataset, rows, probs


def _ece_bound(p: np.ndarray, y: np.ndarray, lead: np.ndarray, bins: int = 10) -> float:
    """3 standard errors of each equal-count bin's label rate, weighted as `evaluate.ece` weighs the bins.

    The standard error is the larger of the binomial one (given the predicted probabilities) and the
    cluster-robust one (a lead's rows at different ages share one outcome, so they are correlated). A
    calibrated oracle's ECE is about 0.8 of the weighted standard error on average.
    """
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, bins):
        g = pd.DataFrame({"r": y[chunk] - p[chunk], "lead": lead[chunk]})
        se_binom = np.sqrt((p[chunk] * (1 - p[chunk])).sum()) / len(chunk)
        se_cluster = np.sqrt((g.groupby("lead").r.sum() ** 2).sum()) / len(chunk)
        total += len(chunk) * 3 * max(se_binom, se_cluster)
    return total / len(p)


def test_training_oracle_is_calibrated_on_training_rows(training):
    from leadscore.model.evaluate import ece

    _, rows, probs = training
    y, lead = rows.label.to_numpy(), rows.lead_id.to_numpy()
    hand = (rows.moment == "handoff").to_numpy()
    assert 0.02 < hand.mean() < 0.2  # hand-over rows are a real share of the rows, and mostly positive
    # then every training row has an exact probability, calibrated overall and decile by decile
    p = probs.training.to_numpy()
    assert not np.isnan(p).any()
    assert ece(p, y) <= _ece_bound(p, y, lead)
    _check_calibration(probs.training, rows.label, rows.lead_id)
    # while the fixed-age probability is not: it misses what the hand-over reveals (far too low there)
    obs = probs.observable.to_numpy()
    assert ece(obs, y) > 2 * _ece_bound(obs, y, lead)
    assert obs[hand].mean() < y[hand].mean() - 0.2
    # and given the hand-over itself (the lead is in review), the hand-over rows are calibrated
    _check_calibration(probs.handoff[hand], rows.label[hand], rows.lead_id[hand])


def test_no_model_fitted_on_the_features_beats_the_training_oracle(training):
    from leadscore.features import catalog
    from leadscore.features.frames import feature_frame
    from leadscore.model.train import TrainConfig, fit_models
    from leadscore.model.training_data import split_by_lead_time

    dataset, rows, probs = training
    # given the project's boosted model fitted on the same rows' point-in-time features and, as two more
    # features, the fixed-age and the hand-over oracles (functions of observable data too: what a model could
    # learn at best from each kind of row), with the leads that came last held out
    feats = feature_frame(dataset, rows)
    values = {f.name: feats[f.name].to_numpy() for f in catalog.FEATURES}
    values["fixed_age_oracle"] = probs.observable.to_numpy()
    values["handoff_oracle"] = probs.handoff.to_numpy()
    holdout = split_by_lead_time(rows, 0.3)
    fitted = fit_models(values, rows, holdout, catalog.CATEGORICAL, TrainConfig(model="boosted"))
    y = rows.label.to_numpy()[holdout]
    p_model = fitted.holdout_p

    def ll(p, i):
        p = np.clip(p[i], 1e-7, 1 - 1e-7)
        return -np.mean(y[i] * np.log(p) + (1 - y[i]) * np.log1p(-p))

    def bootstrap(p_ref):  # paired: log loss of the model minus the reference's, 95 % interval
        rng = np.random.default_rng(0)
        d = [ll(p_model, i) - ll(p_ref, i) for i in (rng.integers(0, len(y), len(y)) for _ in range(200))]
        return np.quantile(d, [0.025, 0.975])

    # then the model does not beat the training oracle beyond bootstrap noise
    low, high = bootstrap(probs.training.to_numpy()[holdout])
    assert high > 0, (low, high)
    # and the training oracle itself beats the fixed-age one beyond noise on these rows (which the model
    # cannot do: the fixed-age one is not a bound there, it is miscalibrated on hand-over rows)
    rng = np.random.default_rng(1)
    p_tr, p_obs = probs.training.to_numpy()[holdout], probs.observable.to_numpy()[holdout]
    d = [ll(p_tr, i) - ll(p_obs, i) for i in (rng.integers(0, len(y), len(y)) for _ in range(200))]
    assert np.quantile(d, 0.975) < 0


def test_age_probability_matches_the_sampled_ages():
    from leadscore.features.labels import QualifiedDefinition, age_probability, sampled_ages

    ids = pd.Series([f"L{i:07d}" for i in range(40_000)])
    for definition in (
        QualifiedDefinition(),
        QualifiedDefinition(age_sampling="fixed"),
        QualifiedDefinition(ages_days=(2, 5), seed=4),
    ):
        drawn = np.concatenate([a for _, a in sampled_ages(ids, definition)])
        ages = np.arange(0, 200)
        share = np.bincount(drawn, minlength=len(ages))[: len(ages)] / len(ids)
        p = age_probability(definition, ages)
        # then the share of leads with a row at each age is that probability, within binomial noise
        assert np.all(np.abs(share - p) <= 4 * np.sqrt(p * (1 - p) / len(ids)) + 1e-12)
        assert p.sum() == pytest.approx(len(definition.ages_days))


DRIFT_AT = pd.Timestamp(DriftParams().at)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """The same rows on data with the default base-rate shift (from 2026-01-01), labels and oracle."""
    out = tmp_path_factory.mktemp("oracle") / "drift"
    info = generate(out, N, seed=3, params=DemoParams(drift=DriftParams()))
    leads = pd.read_parquet(out / "leads.parquet")
    outcomes = pd.read_parquet(out / "outcomes.parquet")
    created = pd.to_datetime(parse_iso_utc_ms(leads.created_at.tolist()), unit="ms", utc=True)
    rows = pd.concat(
        [pd.DataFrame({"lead_id": leads.lead_id, "as_of": created + pd.Timedelta(days=a)}) for a in AGES],
        ignore_index=True,
    )
    rows = rows[rows.as_of + pd.Timedelta(days=H) <= pd.Timestamp(info.snapshot_at)]
    q = outcomes[outcomes.outcome == "qualified"]
    q_at = pd.Series(pd.to_datetime(parse_iso_utc_ms(q["at"].tolist()), unit="ms", utc=True), index=q.lead_id)
    t = rows.lead_id.map(q_at)
    y = (t > rows.as_of) & (t <= rows.as_of + pd.Timedelta(days=H))
    probs = oracle_probabilities(out, rows, horizon_days=H)
    return rows, y, probs


def test_drift_doubles_the_base_rate(drifted):
    rows, y, probs = drifted
    ok = probs.observable.notna()
    before = ok & (rows.as_of + pd.Timedelta(days=H) < DRIFT_AT)
    after = ok & (rows.as_of >= DRIFT_AT)
    # then rows whose whole horizon is after the shift are about twice as often positive (docs/demo-data.md:
    # 9.7 % -> 20.5 % at 20k leads, seed 3)
    assert 1.7 < y[after].mean() / y[before].mean() < 2.5
    assert before.sum() > 20_000 and after.sum() > 20_000


def test_oracle_stays_calibrated_under_drift(drifted):
    rows, y, probs = drifted
    straddle = (rows.as_of < DRIFT_AT) & (rows.as_of + pd.Timedelta(days=H) > DRIFT_AT)
    for col in ("observable", "hidden"):
        ok = probs[col].notna()
        # then the oracle is calibrated overall, after the shift alone, and on the rows whose horizon
        # straddles it (where part of the horizon moves with the old chain and part with the new one)
        _check_calibration(probs[col][ok], y[ok], rows.lead_id[ok])
        after = ok & (rows.as_of >= DRIFT_AT)
        _check_calibration(probs[col][after], y[after], rows.lead_id[after])
        mid = ok & straddle
        assert (
            abs(probs[col][mid].mean() - y[mid].mean())
            < 4 * np.sqrt((probs[col][mid] * (1 - probs[col][mid])).sum()) / mid.sum()
        )


def test_training_oracle_stays_calibrated_under_drift(tmp_path):
    # given drifted data (the shift falls inside the training rows) and the default definition's rows,
    # hand-over rows included
    from leadscore.features.labels import QualifiedDefinition, training_rows
    from leadscore.features.loading import load_dataset

    out = tmp_path / "drift"
    generate(out, 8000, seed=5, params=DemoParams(drift=DriftParams()))
    definition = QualifiedDefinition()
    rows = training_rows(load_dataset(out), definition)
    probs = oracle_probabilities(out, rows[["lead_id", "as_of"]], definition=definition)
    ok = probs.training.notna()
    after = ok & (rows.as_of >= DRIFT_AT)
    # then the training-row oracle is calibrated overall and after the shift alone
    _check_calibration(probs.training[ok], rows.label[ok], rows.lead_id[ok])
    _check_calibration(probs.training[after], rows.label[after], rows.lead_id[after])
    # and on the hand-over rows after the shift, the hand-over column (which knows they are hand-overs) is
    hand = after & (rows.moment == "handoff") & probs.handoff.notna()
    assert hand.sum() > 300
    _check_calibration(probs.handoff[hand], rows.label[hand], rows.lead_id[hand])
