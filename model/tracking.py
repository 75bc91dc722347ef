"""Everything a training run leaves in MLflow: data fingerprint, qualified-lead definition, feature list,
params, metrics, plots, leakage report, package version, and the registered pyfunc model with its gate
decision."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version as pkg_version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from leadscore.features import schema as S
from leadscore.features.loading import Dataset
from leadscore.model import persist, registry
from leadscore.model.evaluate import figures
from leadscore.model.pyfunc import LeadscorePyfunc, example_frame
from leadscore.model.train import TrainConfig, TrainResult

log = logging.getLogger(__name__)
EXPERIMENT = "leadscore"


def package_version() -> str:
    try:
        return pkg_version("leadscore")
    except PackageNotFoundError:
        return "0+unknown"


def fingerprint(dataset: Dataset) -> dict:
    """Row counts, time range and a content hash of the data a model was trained on."""
    h = hashlib.sha256()
    for df in (dataset.leads, dataset.events, dataset.outcomes):
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    ev = dataset.events[S.TIMESTAMP]
    return {
        "n_leads": len(dataset.leads), "n_events": len(dataset.events), "n_outcomes": len(dataset.outcomes),
        "first_lead": str(dataset.leads[S.CREATED_AT].min()), "last_lead": str(dataset.leads[S.CREATED_AT].max()),
        "first_event": str(ev.min()) if len(ev) else None, "last_event": str(ev.max()) if len(ev) else None,
        "snapshot_at": str(dataset.snapshot_at), "sha256": h.hexdigest(),
    }


def example_body(dataset: Dataset, rows: pd.DataFrame) -> dict:
    """A valid POST /v1/score body: a holdout lead with its events before its as_of moment."""
    hold = rows[rows["part"] == "holdout"]
    pick = hold.sort_values(["label", "as_of"], ascending=[False, False]).iloc[0]
    lead = dataset.leads.set_index(S.LEAD_ID).loc[pick[S.LEAD_ID]]
    ev = dataset.events[(dataset.events[S.LEAD_ID] == pick[S.LEAD_ID]) & (dataset.events[S.TIMESTAMP] < pick["as_of"])]
    events = [{"type": t, "timestamp": ts.isoformat().replace("+00:00", "Z"), **({"page": p} if isinstance(p, str) else {})}
              for t, ts, p in zip(ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE])]
    attrs = {a: lead[a] for a in S.LEAD_ATTRIBUTES if isinstance(lead.get(a), str)}
    return {"leads": [{"lead_id": str(pick[S.LEAD_ID]), "created_at": lead[S.CREATED_AT].isoformat().replace("+00:00", "Z"),
                       "as_of": pick["as_of"].isoformat().replace("+00:00", "Z"), "attributes": attrs,
                       "events": events}]}


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    version: str | None
    decision: registry.GateDecision | None


def _flat(prefix: str, d: dict) -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flat(key, v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            out[key] = float(v)
    return out


def track(result: TrainResult, dataset: Dataset, config: TrainConfig, *, holdout_values: dict,
          extra_metrics: dict | None = None, leakage: dict | None = None, register: bool = True,
          run_name: str | None = None, data_source: str = "", example: dict | None = None,
          data_fingerprint: dict | None = None, model_name: str = registry.MODEL_NAME) -> TrackedRun:
    """Log a training run and (optionally) register its model.

    `example` and `data_fingerprint` replace what is otherwise derived from `dataset` (the API example
    body and `fingerprint(dataset)`); `leadscore table` passes both, and `dataset=None`, for a flat export.
    """
    if not os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run` the run (and its experiment) is given
        mlflow.set_experiment(EXPERIMENT)
    model = result.model
    model.info["example"] = example if example is not None else example_body(dataset, result.rows)
    model.info["package_version"] = package_version()
    with mlflow.start_run(run_name=run_name) as run:
        params = {"model": config.model, "chosen_family": model.family, "policy": config.policy,
                  "policy_target": config.policy_target, "holdout_fraction": config.holdout_fraction,
                  "calibration_fraction": config.calibration_fraction, "seed": config.seed,
                  "horizon_days": config.definition.horizon_days, "n_features": len(model.encoder.features),
                  "data_source": data_source[:250]}
        params.update({f"boosted.{k}": v for k, v in asdict(config.boosted).items()})
        mlflow.log_params(params)
        mlflow.set_tags({"leadscore.version": package_version(), "leadscore.family": model.family})
        mlflow.log_dict(config.definition.to_dict(), "qualified_definition.json")
        mlflow.log_dict({"features": list(model.encoder.features),
                         "categorical": list(model.encoder.categorical)}, "features.json")
        mlflow.log_dict(data_fingerprint if data_fingerprint is not None else fingerprint(dataset),
                        "data_fingerprint.json")
        mlflow.log_dict(model.policy.to_dict(), "handoff_policy.json")
        mlflow.log_dict(leakage or {"suspects": [], "excluded": []}, "leakage.json")
        metrics = {"holdout": result.metrics, **(extra_metrics or {}),
                   "candidates": {k: v for k, v in result.candidates.items()}}
        mlflow.log_metrics(_flat("", metrics))
        mlflow.log_metrics({"n_train": model.info["n_train"], "n_holdout": model.info["n_holdout"]})
        hold = result.rows["part"].to_numpy() == "holdout"
        y = result.rows["label"].to_numpy()[hold]
        for name, fig in figures(result.holdout_p, y, result.holdout_contributions, model.encoder.features).items():
            mlflow.log_figure(fig, f"plots/{name}")
        with tempfile.TemporaryDirectory() as tmp:
            bundle = persist.save(model, Path(tmp) / "bundle", estimator=result.estimator)
            frame = example_frame(model.info["example"])
            out = LeadscorePyfunc()
            out.model = model
            signature = infer_signature(frame, out.predict(None, frame))
            info = mlflow.pyfunc.log_model(
                name="model", python_model=LeadscorePyfunc(), artifacts={"bundle": str(bundle)},
                signature=signature, input_example=frame,
                pip_requirements=[f"leadscore=={package_version()}"],
            )
        if not register:
            return TrackedRun(run.info.run_id, None, None)
        client = MlflowClient()
        version = str(mlflow.register_model(info.model_uri, model_name).version)
        client.set_registered_model_alias(model_name, registry.CHALLENGER, version)
        decision = registry.gate(model, version, holdout_values, y, name=model_name, client=client)
        mlflow.log_dict(decision.to_dict(), "gate_decision.json")
        client.set_model_version_tag(model_name, version, "gate", json.dumps(decision.to_dict())[:5000])
        if decision.promote:
            registry.promote(version, name=model_name, client=client, reason=decision.reason)
        log.info("registered %s version %s: %s", model_name, version, decision.reason)
        return TrackedRun(run.info.run_id, version, decision)
