"""`leadscore recalibrate` as a scheduler runs it: a champion trained before a base-rate shift is recalibrated
on the newest window of drifted demo data and promoted (ECE restored on the later slice, reasons still exact);
on data without a shift the recalibration is registered but the champion kept; run again it does nothing;
with too little data, no champion or a held lock it registers nothing. Real MLflow registry (SQLite in a
temporary folder), real store, the command through its CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.features.frames import feature_frame
from leadscore.features.labels import training_rows
from leadscore.features.loading import load_dataset
from leadscore.model import registry, tracking
from leadscore.model.evaluate import ece
from leadscore.model.train import TrainConfig, train
from leadscore.serve import db, locks
from mlflow import MlflowClient
from typer.testing import CliRunner

from leadscore.cli.main import app
from leadscore.demo.generate import generate
from leadscore.demo.params import DemoParams, DriftParams
from leadscore.recalibration import window_rows
from leadscore.settings import get_settings

SHIFT = pd.Timestamp(DriftParams().at)
DEMO_LEADS, DEMO_SEED = (
    4000,
    7,
)  # as the session's demo_dir (tests/conftest.py): the same leads, without the shift


def _recalibrate(*args: str):
    return CliRunner().invoke(app, ["recalibrate", *args], catch_exceptions=False)


def _versions() -> list[str]:
    try:
        return sorted(
            (str(v.version) for v in MlflowClient().search_model_versions(f"name = '{registry.MODEL_NAME}'")),
            key=int,
        )
    except Exception:  # noqa: BLE001 - no registered model yet
        return []


def _aliases() -> dict:
    return {a: registry.alias_version(a) for a in (registry.CHAMPION, registry.CHALLENGER)}


def _text(result) -> str:
    return " ".join(result.output.split())


class _Registry:
    """A fresh, empty MLflow registry (SQLite) and an empty store in `tmp`, for one scenario; the process's
    MLflow and settings point back to the session's registry afterwards."""

    def __init__(self, tmp: Path):
        self.tmp, self.uri = tmp, f"sqlite:///{tmp / 'mlflow.db'}"
        self.store = f"sqlite:///{tmp / 'leadscore.db'}"

    def __enter__(self):
        self.before = mlflow.get_tracking_uri()
        self.mp = pytest.MonkeyPatch()
        self.mp.chdir(self.tmp)
        self.mp.setenv("MLFLOW_TRACKING_URI", self.uri)
        self.mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(self.uri)
        db.migrate(self.store)  # the service's store: no feedback in it, the export has the outcomes
        return self

    def __exit__(self, *exc):
        self.mp.undo()
        get_settings.cache_clear()
        mlflow.set_tracking_uri(self.before)


def _before_the_shift(data_dir: Path):
    """The data as an export taken at the shift's moment would hold it."""
    ds = load_dataset(data_dir)
    return replace(
        ds,
        leads=ds.leads[ds.leads[S.CREATED_AT] < SHIFT],
        events=ds.events[ds.events[S.TIMESTAMP] < SHIFT],
        outcomes=ds.outcomes[ds.outcomes[S.OUTCOME_AT] < SHIFT],
        snapshot_at=SHIFT,
    )


def _champion(data_dir: Path, until_the_shift: bool = True) -> None:
    config = TrainConfig(model="scorecard")
    old = _before_the_shift(data_dir) if until_the_shift else load_dataset(data_dir)
    result = train(old, config)
    tracked = tracking.track(
        result, old, config, holdout_values=result.holdout_values, data_source=str(data_dir)
    )
    assert tracked.decision.rule == "first" and registry.alias_version(registry.CHAMPION) == "1"


@pytest.fixture(scope="module")
def drifted_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recal") / "drifted"
    generate(out, DEMO_LEADS, seed=DEMO_SEED, params=DemoParams(drift=DriftParams()))
    return out


@pytest.fixture(scope="module")
def after_drift(drifted_dir, tmp_path_factory):
    """A champion trained on the drifted data before the shift; then recalibrate on all of it, again on the
    same data, and with a window too short to judge. What the tests look at is collected inside."""
    tmp = tmp_path_factory.mktemp("recal-drift")
    with _Registry(tmp) as reg:
        _champion(drifted_dir)
        first = _recalibrate("--export", str(drifted_dir), "--database-url", reg.store)
        state = (_versions(), _aliases())
        version = MlflowClient().get_model_version(registry.MODEL_NAME, state[0][-1])
        run = mlflow.get_run(version.run_id)
        artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}
        artifacts |= {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
        old = registry.load_scoring_model(f"models:/{registry.MODEL_NAME}/1")
        new = registry.load_scoring_model(f"models:/{registry.MODEL_NAME}/{version.version}")
        again = _recalibrate("--export", str(drifted_dir), "--database-url", reg.store)
        after_again = (_versions(), _aliases())
        short = _recalibrate("--export", str(drifted_dir), "--database-url", reg.store, "--window", "4d")
        after_short = (_versions(), _aliases())
    return {
        "first": first,
        "state": state,
        "version": version,
        "run": run,
        "artifacts": artifacts,
        "old": old,
        "new": new,
        "again": again,
        "after_again": after_again,
        "short": short,
        "after_short": after_short,
    }


def test_a_base_rate_shift_is_recalibrated_and_promoted(after_drift):
    first, (versions, aliases) = after_drift["first"], after_drift["state"]
    # then the recalibration is registered as version 2 and promoted: exit 0, rule recalibrated
    assert first.exit_code == 0, first.output
    assert versions == ["1", "2"] and aliases[registry.CHAMPION] == "2"
    assert "promoted version 2 to champion (rule recalibrated)" in _text(first)
    gate = json.loads(after_drift["version"].tags["gate"])
    # and on the newest slice of the window (leads the refit did not see) ECE is restored: the champion,
    # calibrated on 11 % positives, said ~10 % where ~25 % qualified
    assert gate["ece_champion"] > 0.1 and gate["ece_challenger"] < 0.04
    assert after_drift["version"].tags[tracking.MODEL_CHOICE] == "recalibrate"
    assert after_drift["version"].tags["recalibrated_from"] == "1"


def test_the_run_logs_the_reliability_before_and_after(after_drift):
    run, artifacts = after_drift["run"], after_drift["artifacts"]
    assert "plots/reliability_before_after.png" in artifacts and "recalibration.json" in artifacts
    assert run.data.tags["leadscore.gate.rule"] == "recalibrated"
    assert run.data.metrics["recalibration.ece_new"] < run.data.metrics["recalibration.ece_old"]
    assert (
        run.data.params["recalibrate.from_version"] == "1"
        and run.data.params["recalibrate.window_days"] == "90"
    )


def test_only_calibration_and_policy_change_and_reasons_stay_exact(after_drift, drifted_dir):
    old, new = after_drift["old"], after_drift["new"]
    # given the two versions and the newest window's rows of the drifted data
    ds = load_dataset(drifted_dir)
    rows = window_rows(training_rows(ds, new.definition), ds.snapshot_at, 30, 90)
    feats = feature_frame(ds, rows)
    values = {f: feats[f].to_numpy() for f in new.encoder.features}
    # then the encoder and the explainer are the champion's; only calibration and policy are new
    assert new.encoder.features == old.encoder.features and new.family == old.family
    assert new.definition == old.definition
    assert new.calibration != old.calibration and new.policy.threshold > old.policy.threshold
    ex_old, ex_new = old.explain(values), new.explain(values)
    np.testing.assert_array_equal(ex_new.X, ex_old.X)
    # and the explanation is exact: base + contributions == calibrated log-odds == Platt(raw log-odds)
    np.testing.assert_allclose(ex_new.base + ex_new.contributions.sum(1), ex_new.logit, atol=1e-9, rtol=0)
    raw_base, raw_C = new.raw(ex_new.X)
    np.testing.assert_allclose(ex_new.logit, new.calibration(raw_base + raw_C.sum(1)), atol=1e-6, rtol=0)
    # and every contribution is the champion's scaled by one positive factor: the same reasons, same order
    scale = new.calibration.a / old.calibration.a
    assert scale > 0
    np.testing.assert_allclose(ex_new.contributions, scale * ex_old.contributions, atol=1e-9, rtol=1e-9)
    ids = list(rows[S.LEAD_ID][:30])
    top = [
        [r["feature"] for r in res["reasons"]]
        for res in new.results({k: v[:30] for k, v in values.items()}, ids)
    ]
    assert top == [
        [r["feature"] for r in res["reasons"]]
        for res in old.results({k: v[:30] for k, v in values.items()}, ids)
    ]
    # and monitoring's training histograms: the features' are the champion's, the score's moved with the map
    d_old, d_new = old.info["distributions"], new.info["distributions"]
    assert d_new["features"] == d_old["features"] and d_new["score"]["edges"] != d_old["score"]["edges"]
    assert d_new["grades"] != d_old["grades"] and sum(d_new["score"]["proportions"]) == pytest.approx(1.0)
    # and the new version is calibrated on the window where the champion is not
    y = rows["label"].to_numpy()
    assert ece(ex_new.probability, y) < 0.04 < 0.1 < ece(ex_old.probability, y)


def test_a_second_run_on_the_same_data_does_nothing(after_drift):
    again = after_drift["again"]
    assert again.exit_code == 3, again.output
    assert "the champion, version 2, is already a recalibration on this data" in _text(again)
    assert after_drift["after_again"] == after_drift["state"]


def test_a_window_too_short_to_judge_is_not_enough_data(after_drift):
    short = after_drift["short"]
    # then exit 4 says how many rows are missing and that a wider window helps, and nothing is registered
    assert short.exit_code == 4, short.output
    text = _text(short)
    assert "not enough rows to" in text and "widen --window" in text and "nothing was registered" in text
    assert after_drift["after_short"] == after_drift["state"]


def test_without_a_shift_the_recalibration_is_kept(demo_dir, tmp_path):
    # given the same leads without a base-rate shift (the session's demo data has the same size and seed),
    # and a champion trained on all of it
    with _Registry(tmp_path) as reg:
        _champion(demo_dir, until_the_shift=False)
        # when recalibrating on the newest window
        done = _recalibrate("--export", str(demo_dir), "--database-url", reg.store)
        # then the recalibration is registered as challenger and the champion kept: exit 3, with the ECEs
        assert done.exit_code == 3, done.output
        text = _text(done)
        assert "kept the champion version 1 (rule not_better_calibrated)" in text
        assert "not better calibrated beyond noise" in text and "version 2 stays challenger" in text
        assert _aliases() == {registry.CHAMPION: "1", registry.CHALLENGER: "2"}


def test_no_champion_or_a_held_lock_registers_nothing(drifted_dir, tmp_path):
    with _Registry(tmp_path) as reg:
        # no champion: exit 1, saying what to do
        done = _recalibrate("--export", str(drifted_dir), "--database-url", reg.store)
        assert done.exit_code == 1, done.output
        assert "no champion of 'leadscore' to recalibrate" in _text(done)
        # a retrain (or another recalibration) holds the lock: exit 1 at once, naming the holder
        engine = db.make_engine(reg.store)
        held = locks.JobLock(engine, "retrain", holder="batch-host-2 pid 4242")
        held.acquire()
        try:
            done = _recalibrate("--export", str(drifted_dir), "--database-url", reg.store)
        finally:
            held.release()
            engine.dispose()
        assert done.exit_code == 1 and "held by batch-host-2 pid 4242" in _text(done)
        assert _versions() == []


def test_outcomes_that_contradict_the_ranking_register_nothing(demo_dir, tmp_path):
    # given a champion trained on the demo data, and an export of the same data where, among the leads of the
    # last 200 days, only the quarter the champion scores lowest qualified (20 days in)
    with _Registry(tmp_path) as reg:
        _champion(demo_dir, until_the_shift=False)
        champ = registry.load_scoring_model(f"models:/{registry.MODEL_NAME}/1")
        ds = load_dataset(demo_dir)
        rows = training_rows(ds, champ.definition)
        rows = rows[rows["as_of"] > ds.snapshot_at - pd.Timedelta(days=200)]
        feats = feature_frame(ds, rows)
        p = champ.explain({f: feats[f].to_numpy() for f in champ.encoder.features}).probability
        mean_p = pd.Series(p, index=rows[S.LEAD_ID].to_numpy()).groupby(level=0).mean()
        low = mean_p[mean_p <= mean_p.quantile(0.25)].index
        export = tmp_path / "inverted"
        shutil.copytree(demo_dir, export)
        out = pd.read_parquet(demo_dir / "outcomes.parquet")
        created = ds.leads.set_index(S.LEAD_ID)[S.CREATED_AT]
        added = {
            S.LEAD_ID: np.asarray(low),
            S.OUTCOME: "qualified",
            S.OUTCOME_AT: (created.loc[low] + pd.Timedelta(days=20)).astype(str).to_numpy(),
        }
        added = pd.DataFrame({c: added.get(c) for c in out.columns}).astype(out.dtypes.to_dict())
        pd.concat([out[~out[S.LEAD_ID].isin(mean_p.index)], added]).to_parquet(
            export / "outcomes.parquet", index=False
        )
        # when recalibrating on it
        done = _recalibrate("--export", str(export), "--database-url", reg.store)
        # then the champion is kept (exit 3) on rule inverted, and no version is registered
        assert done.exit_code == 3, done.output
        text = _text(done)
        assert "(rule inverted)" in text and "retrain instead" in text and "nothing was registered" in text
        assert _versions() == ["1"] and _aliases() == {registry.CHAMPION: "1", registry.CHALLENGER: None}


def test_recalibration_with_a_selection_table_weighs_rows_as_if_repeated(trained):
    from leadscore.recalibration import recalibrated

    # given the champion's holdout rows, whose leads came through the handoff policy at propensities 1,
    # 1/2 and 1/20 (a selection table), and the same rows repeated 1, 2 and 20 times
    result = trained.result
    hold = (result.rows["part"] == "holdout").to_numpy()
    rows = result.rows.loc[hold, [S.LEAD_ID, "as_of", "label"]].reset_index(drop=True)
    w = np.random.default_rng(0).choice([1, 1, 2, 20], size=len(rows))
    dup = np.repeat(np.arange(len(rows)), w)
    values = result.holdout_values
    # when the champion is recalibrated on each
    weighted = recalibrated(result.model, values, rows.assign(propensity=1.0 / w))
    repeated = recalibrated(
        result.model, {k: v[dup] for k, v in values.items()}, rows.iloc[dup].reset_index(drop=True)
    )
    # then the new calibration, policy and judged ECEs are those of the repeated rows
    for k in ("ece_old", "ece_new"):
        assert weighted.report[k] == pytest.approx(repeated.report[k], rel=1e-9), k
    for k in ("a", "b"):
        assert weighted.report["platt_new"][k] == pytest.approx(repeated.report["platt_new"][k], abs=1e-5), k
    assert weighted.report["threshold_new"] == repeated.report["threshold_new"]
    assert weighted.model.info["metrics"]["holdout"]["ece"] == pytest.approx(
        repeated.model.info["metrics"]["holdout"]["ece"], rel=1e-9
    )
    # and not those of the rows unweighted
    plain = recalibrated(result.model, values, rows)
    assert weighted.report["ece_new"] != pytest.approx(plain.report["ece_new"], rel=1e-3)
