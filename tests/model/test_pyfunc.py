"""The registered model as MLflow sees it: a pyfunc that loads and scores, with its plots, lineage, and an
sklearn estimator saved by skops with exactly the trusted types."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from leadscore.model import run_metadata
from mlflow import MlflowClient


def test_registered_model_loads_as_pyfunc_and_scores(trained):
    # given the session's registered champion (in the session's own registry)
    mlflow.set_tracking_uri(trained.uri)
    loaded = mlflow.pyfunc.load_model("models:/leadscore@champion")
    example = trained.result.model.info["example"]
    from leadscore.model.pyfunc import example_frame

    # when scoring its input example through the generic pyfunc interface
    out = loaded.predict(example_frame(example))
    # then it returns what the API does for that lead: probability, score, grade, reasons (as objects),
    # insight, and the moment it was scored as of
    expected = trained.result.model.score(example["leads"]).results[0]
    assert 0 <= out["probability"].iloc[0] <= 1 and out["grade"].iloc[0] in "ABCD"
    assert out["probability"].iloc[0] == expected["probability"]
    assert [r["text"] for r in out["reasons"].iloc[0]] == [r["text"] for r in expected["reasons"]]
    assert out["insight"].iloc[0] == (expected["insight"] or "")
    assert pd.Timestamp(out["as_of"].iloc[0]) == pd.Timestamp(example["leads"][0]["as_of"]).floor("ms")
    # and the values outside the training range, as the API lists them
    import json

    assert (
        json.loads(out["out_of_range"].iloc[0])
        == trained.result.model.results(*_example_values(trained.result.model, example))[0]["out_of_range"]
    )
    old = example_frame(example).assign(as_of="2099-01-01T00:00:00Z")
    flagged = json.loads(loaded.predict(old)["out_of_range"].iloc[0])
    assert [f["feature"] for f in flagged if f["feature"] == "lead_age_days"] == ["lead_age_days"]
    # and the run holds plots, lineage and the definition
    run = MlflowClient().get_run(trained.tracked.run_id)
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert {
        "plots/reliability.png",
        "plots/gains_lift.png",
        "plots/score_distribution.png",
        "plots/reasons_summary.png",
    } <= names
    assert run.data.tags["leadscore.version"]
    assert "holdout.roc_auc" in run.data.metrics


def _example_values(model, example):
    from leadscore.features.live import lead_features, to_ms

    lead = example["leads"][0]
    return lead_features([lead], [to_ms(lead["as_of"])]), [lead["lead_id"]]


def test_skops_file_lists_exactly_trusted_types(trained, boosted_result, tmp_path):
    import skops.io as sio
    from leadscore.model import persist

    # given the estimators of both families, saved with their bundles
    listed = set()
    for family, result in (("scorecard", trained.result), ("boosted", boosted_result)):
        path = persist.save(result.model, tmp_path / family, estimator=result.estimator)
        # then each loads back as the estimator it was
        assert type(persist.load_estimator(path)) is type(result.estimator)
        listed |= set(sio.get_untrusted_types(file=path / "estimator.skops"))
    # and the trusted list is exactly the types these files hold: none missing (the file would not load)
    # and none extra (a type trusted for no reason widens what a tampered file could run)
    assert listed == set(persist.TRUSTED_TYPES)
    assert len(persist.TRUSTED_TYPES) == len(set(persist.TRUSTED_TYPES))


def test_training_run_is_named_described_and_lists_its_data(trained):
    # given the session's training run (scorecard on the demo data)
    mlflow.set_tracking_uri(trained.uri)
    run = MlflowClient().get_run(trained.tracked.run_id)
    fp = MlflowClient().download_artifacts(run.info.run_id, "data_fingerprint.json")
    import json

    fp = json.loads(Path(fp).read_text())
    # then its name says what it is: family · data · date (not MLflow's random "receptive-asp-445")
    family, data, day = run.info.run_name.split(" · ")
    assert family == "scorecard" and data == "data" and len(day) == 10 and day[4] == "-"
    # and its description gives the target, the data and the gate's decision
    note = run.data.tags["mlflow.note.content"]
    assert "qualified = qualified / opportunity / won within 30 days" in note
    assert (
        fp["sha256"][:12] in note and "Gate: leadscore version 1 promoted to champion (rule `first`)" in note
    )
    # and the training data is its one dataset input, with the data fingerprint as digest
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == fp["sha256"][: run_metadata.DIGEST_CHARS]
    tags = {t.key: t.value for t in inp.tags}
    assert tags["mlflow.data.context"] == "training" and tags["sha256"] == fp["sha256"]
    assert (
        int(tags["rows"]) == len(trained.result.rows)
        and int(tags["positives"]) == trained.result.rows["label"].sum()
    )
    assert "days_since_engagement" in inp.dataset.schema and '"label"' in inp.dataset.schema
    # and the logged model's holdout metrics are tied to that dataset (model - metrics - data lineage)
    from leadscore.model import registry

    source = (
        MlflowClient().get_model_version(registry.MODEL_NAME, trained.tracked.version).source
    )  # models:/<id>
    (auc,) = [
        m
        for m in MlflowClient().get_logged_model(source.removeprefix("models:/")).metrics
        if m.key == "holdout.roc_auc"
    ]
    assert auc.dataset_digest == inp.dataset.digest and auc.value == trained.result.metrics["roc_auc"]


def test_pyfunc_input_rules_duplicates_naive_times_and_as_of(trained):
    import json

    from leadscore.model.pyfunc import example_frame
    from mlflow.exceptions import MlflowException

    # given the champion as a pyfunc and its example lead
    mlflow.set_tracking_uri(trained.uri)
    loaded = mlflow.pyfunc.load_model("models:/leadscore@champion")
    frame = example_frame(trained.result.model.info["example"])
    events = json.loads(frame.at[0, "events"])
    assert events
    # when its events come twice (an export's exact duplicates), as a list rather than JSON
    doubled = frame.assign(events=[events + events])
    # then the loader's rule removes the copies: the same score as the clean lead
    assert loaded.predict(doubled)["probability"].iloc[0] == loaded.predict(frame)["probability"].iloc[0]
    # and a lead with no events (null, as after a left join) is scored
    assert 0 <= loaded.predict(frame.assign(events=[None]))["probability"].iloc[0] <= 1
    # and a time without an offset is refused, naming the lead and the column, not read as UTC
    naive = frame.assign(created_at=pd.Timestamp(frame.at[0, "created_at"]).tz_convert(None).isoformat())
    with pytest.raises(MlflowException, match=r"created_at: .* has no time zone"):
        loaded.predict(naive)
    naive_events = frame.assign(events=[[{**events[0], "timestamp": "2025-01-01T10:00:00"}]])
    with pytest.raises(MlflowException, match=r"events.timestamp: .* has no time zone"):
        loaded.predict(naive_events)
    # and a time-zone-aware timestamp is taken as the instant it is
    aware = frame.assign(created_at=pd.Timestamp(frame.at[0, "created_at"]).tz_convert("Asia/Tokyo"))
    assert loaded.predict(aware)["probability"].iloc[0] == loaded.predict(frame)["probability"].iloc[0]
    # and a row without as_of is refused rather than scored as of "now" (which differs between retries)
    with pytest.raises(MlflowException, match=r"as_of: missing"):
        loaded.predict(frame.assign(as_of=None))


def test_pyfunc_input_from_raw_frames_scores_as_leadscore_score(trained, demo_dir, tmp_path):
    import pyarrow as pa
    from leadscore.features.loading import dataset_from_frames
    from leadscore.model.batch import score_dataset
    from leadscore.model.pyfunc import pyfunc_input

    # given raw leads and events frames (some events exported twice) and the champion as a pyfunc
    leads = pd.read_parquet(demo_dir / "leads.parquet").iloc[:150]
    events = pd.read_parquet(demo_dir / "events.parquet")
    events = events[events["lead_id"].isin(leads["lead_id"])]
    events = pd.concat([events, events.sample(40, random_state=0)], ignore_index=True)
    as_of = pd.Timestamp("2025-09-01T00:00:00Z")
    mlflow.set_tracking_uri(trained.uri)
    loaded = mlflow.pyfunc.load_model("models:/leadscore@champion")
    # when the pyfunc scores what pyfunc_input builds from them
    got = loaded.predict(pyfunc_input((leads, events), as_of)).set_index("lead_id")
    # then it is what batch scoring (`leadscore score`'s path) gives for the loaded data, lead by lead
    dataset = dataset_from_frames(leads, pa.Table.from_pandas(events, preserve_index=False))
    score_dataset(dataset, trained.result.model, tmp_path / "batch.parquet", as_of)
    want = pd.read_parquet(tmp_path / "batch.parquet").set_index("lead_id")
    assert 0 < len(want) == len(got) and got.index.tolist() == want.index.tolist()
    assert got["probability"].tolist() == want["probability"].tolist()
    assert got["grade"].tolist() == want["grade"].tolist()
    assert got["qualified"].tolist() == want["qualified"].tolist()
    # and the same reasons: positive then negative, strongest first, the batch file's pos_k / neg_k slots
    slots = [f"{side}_{k}_text" for side in ("pos", "neg") for k in range(1, 6)]
    batch_reasons = [[t for t in row if isinstance(t, str)] for row in want[slots].itertuples(index=False)]
    assert [[r["text"] for r in rs] for rs in got["reasons"]] == batch_reasons
