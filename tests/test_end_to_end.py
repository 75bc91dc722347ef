"""The real path a newcomer takes: generate -> train -> serve as a real process -> score the example ->
post feedback -> read it back. Commands run as subprocesses, exactly as `make run` runs them."""

from __future__ import annotations

import json

import httpx
from support import KEYS, run_cli, start_server


def _cli(*args, env, cwd):
    done = run_cli(*args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_generate_train_serve_score_feedback(tmp_path):
    import os

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    # given demo data and a model trained and registered by the CLI
    _cli("demo-data", "--leads", "2500", "--seed", "3", "--out", "data", env=env, cwd=tmp_path)
    _cli(
        "train",
        "--data",
        "data",
        "--model",
        "scorecard",
        "--metrics-out",
        "metrics.json",
        env=env,
        cwd=tmp_path,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"roc_auc", "pr_auc", "brier", "ece"} <= set(metrics["holdout"])
    assert metrics["oracle"]["roc_auc"] > 0.5 and metrics["n_train"] > 0 and metrics["n_holdout"] > 0
    assert metrics["version"] == "1" and metrics["promoted"]
    # and a rerun with --if-missing does not train again
    again = _cli("train", "--data", "data", "--if-missing", env=env, cwd=tmp_path)
    assert "champion already" in again.stderr
    # when the service runs as a real process
    server = start_server(tmp_path, env["MLFLOW_TRACKING_URI"])
    try:
        scorer = server.client("scorer")
        example = scorer.get("/v1/model").json()["example"]
        # then the model's own example scores with a probability, score, grade and reasons
        r = scorer.post("/v1/score", json=example)
        assert r.status_code == 200, r.text
        result = r.json()["results"][0]
        assert 0 <= result["probability"] <= 1 and 0 <= result["score"] <= 100
        assert result["grade"] in "ABCD" and result["reasons"]
        assert r.json()["model"] == {"name": "leadscore", "version": "1"}
        # and without a key it is refused
        assert httpx.post(f"{server.url}/v1/score", json=example).status_code == 401
        # and feedback for the lead, once it is stored (PUT /v1/leads), is stored and read back
        sales = server.client("sales")
        fb = {"lead_id": result["lead_id"], "outcome": "disqualified", "reason": "no_budget"}
        assert sales.post("/v1/feedback", json=fb).status_code == 404  # scored inline only: never a label
        lead = example["leads"][0]
        assert scorer.put(
            f"/v1/leads/{result['lead_id']}",
            json={"created_at": lead["created_at"], "attributes": lead["attributes"]},
        ).json()["created"]
        assert sales.post("/v1/feedback", json=fb).status_code == 201
        stored = sales.get("/v1/feedback", params={"lead_id": result["lead_id"]}).json()
        assert [(s["outcome"], s["reason"]) for s in stored] == [("disqualified", "no_budget")]
    finally:
        server.stop()
    assert KEYS["scorer"] not in server.log.read_text()
