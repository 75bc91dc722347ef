"""The leakage audit: planted leaks are found, honest columns are not; demo data and the X Education
export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from leadscore.features.leakage import audit_columns, audit_dataset, audit_table
from leadscore.features.table import read_table

X_EDUCATION = Path(__file__).resolve().parents[2].parent / "shared/datasets/x-education-leads.csv"
needs_x_education = pytest.mark.skipif(
    not X_EDUCATION.exists(), reason=f"the X Education export is not at {X_EDUCATION}"
)
SALES_ENTERED = {"Tags", "Lead Quality", "Lead Profile"}


def _synthetic(n: int = 4000, seed: int = 3) -> tuple[dict, np.ndarray]:
    """Honest columns that predict moderately, plus a perfect copy and a field typed in after contact."""
    rng = np.random.default_rng(seed)
    fit = rng.normal(size=n)
    source = rng.choice(["web", "ads", "partner", "event"], n)
    logit = 0.9 * fit + np.select([source == "partner", source == "event"], [0.8, -0.5], 0.0) - 0.3
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    visits = np.round(np.exp(0.5 * fit + rng.normal(scale=0.8, size=n)))
    visits[rng.uniform(size=n) < 0.1] = np.nan  # honestly missing at the same rate for both outcomes
    # sales fill "call_result" after talking to 70 % of converted but 25 % of other leads
    called = rng.uniform(size=n) < np.where(y == 1, 0.7, 0.25)
    call_result = np.where(
        called, np.where(rng.uniform(size=n) < np.where(y == 1, 0.75, 0.35), "keen", "unsure"), None
    )
    status = np.where(y == 1, "customer", "closed")  # a perfect predictor
    values = {
        "visits": visits,
        "source": source.astype(object),
        "industry": rng.choice(["a", "b", "c"], n).astype(object),
        "call_result": call_result.astype(object),
        "status_code": status.astype(object),
    }
    return values, y


def test_planted_leaks_are_flagged_and_honest_columns_are_not():
    # given honest columns, a perfect predictor and a field typed in after contact
    values, y = _synthetic()
    # when audited
    report = audit_columns(values, y)
    by_col = {s["column"]: s for s in report["suspects"]}
    # then the perfect predictor is certain by criterion (a) and excluded
    assert by_col["status_code"]["level"] == "certain" and "a" in by_col["status_code"]["evidence"]["signals"]
    assert by_col["status_code"]["evidence"]["single_column_auc"] > 0.99
    # and the post-contact field is caught by its fill pattern by outcome (b)
    assert "b_label" in by_col["call_result"]["evidence"]["signals"]
    assert set(report["excluded"]) >= {"status_code"}
    # and no honest column is a suspect
    assert not {"visits", "source", "industry"} & set(by_col)


def test_keep_overrides_exclusion_and_is_reported():
    # given the same data, with the perfect predictor kept on purpose
    values, y = _synthetic()
    report = audit_columns(values, y, keep=["status_code"])
    # then it is still a suspect, not excluded, and listed as kept
    assert "status_code" not in report["excluded"] and report["kept"] == ["status_code"]


def test_post_outcome_timestamps_are_certain():
    # given a timestamp-derived column that is after the outcome for most leads (criterion c, as computed
    # by audit_dataset) and otherwise harmless
    values, y = _synthetic()
    report = audit_columns(
        {"visits": values["visits"], "closed_days": np.ones(len(y))},
        y,
        after_outcome={"closed_days": {"share": 0.8, "n": 500}},
    )
    # then it is a certain leak, excluded
    assert report["excluded"] == ["closed_days"]


def test_demo_data_audit_flags_lead_quality(demo_dataset):
    # given the demo data, whose lead_quality is filled by sales after handoff
    from leadscore.features.labels import QualifiedDefinition, training_rows

    rows = training_rows(demo_dataset, QualifiedDefinition())
    # when the event-data audit runs
    report = audit_dataset(demo_dataset, rows)
    by_col = {s["column"]: s for s in report["suspects"]}
    # then lead_quality is a certain leak and excluded, with its evidence
    assert by_col["lead_quality"]["level"] == "certain"
    assert "lead_quality" in report["excluded"]
    ev = by_col["lead_quality"]["evidence"]
    assert ev["fill_rate_with_outcome"] - ev["fill_rate_without_outcome"] >= 0.2
    # and the report is JSON as MLflow stores it
    json.dumps(report)


@needs_x_education
def test_x_education_audit_names_sales_entered_columns():
    # given the real X Education export
    table = read_table(X_EDUCATION, "Converted")
    # when audited
    report = audit_table(table)
    by_col = {s["column"]: s for s in report["suspects"]}
    # then the columns sales typed in after contact are excluded
    assert set(report["excluded"]) >= SALES_ENTERED
    # and the latest-state columns are at least warned about
    assert {"Last Activity", "Last Notable Activity"} <= set(by_col)
    # and web behaviour, a form answer and the lead's origin are not suspects
    assert not {"Total Time Spent on Website", "TotalVisits", "Lead Origin", "Lead Source"} & set(by_col)


@needs_x_education
@pytest.mark.slow
def test_table_command_end_to_end_on_x_education(tmp_path):
    # given a fresh SQLite MLflow
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "metrics.json"
    # when `leadscore table` runs on the export with a stratified split
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadscore",
            "table",
            str(X_EDUCATION),
            "--label",
            "Converted",
            "--id",
            "Prospect ID",
            "--metrics-out",
            str(out),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(out.read_text())
    # then the sales-entered columns are named, excluded and not used, loudly
    assert set(m["leakage"]["excluded"]) >= SALES_ENTERED
    assert not SALES_ENTERED & set(m["features"])
    assert "LEAK excluded 'Tags'" in proc.stderr.replace("\n", " ")
    # and the model without them is strong on the holdout
    assert m["holdout"]["roc_auc"] >= 0.90
    assert m["n_holdout"] == pytest.approx(0.2 * 9237, abs=2)
    # and the registered model scores raw export rows through MLflow's pyfunc
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/leadscore-flat/{m['version']}")
        raw = pd.read_csv(X_EDUCATION).head(5)  # as a user reads it: numbers typed, empty cells NaN
        schema = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
        frame = pd.DataFrame(
            {
                c: raw[c].astype(float) if t == "double" else raw[c].fillna("").astype(str)
                for c, t in schema.items()
            }
        )
        scored = model.predict(frame)
    finally:
        mlflow.set_tracking_uri(previous)
    assert list(scored["lead_id"]) == list(raw["Prospect ID"])
    assert scored["probability"].between(0, 1).all()
