"""Everything a training run leaves in MLflow: a name and description saying what the run is, the training
data as a dataset input (digest = data fingerprint), the qualified-lead definition, feature list, params,
metrics, plots, leakage report, package version, and the registered pyfunc model with its gate decision.
What the run says about itself and its data is built in `run_metadata.py`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from leadscore.features.loading import Dataset
from leadscore.model import registry
from leadscore.model.gate import GateDecision, gate
from leadscore.model.plots import figures
from leadscore.model.pyfunc import BUNDLE_SHA256, log_model
from leadscore.model.run_metadata import (
    NOTE,
    data_input,
    describe,
    example_body,
    fingerprint,
    package_version,
    run_title,
)
from leadscore.model.train import TrainConfig, TrainResult
from mlflow import MlflowClient

log = logging.getLogger(__name__)
EXPERIMENT = "leadscore"


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    version: str | None
    decision: GateDecision | None


def _flat(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flat(key, v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            out[key] = float(v)
    return out


def track(
    result: TrainResult,
    dataset: Dataset | None,
    config: TrainConfig,
    *,
    holdout_values: dict[str, Any],
    extra_metrics: dict[str, Any] | None = None,
    leakage: dict[str, Any] | None = None,
    register: bool = True,
    run_name: str | None = None,
    data_source: str = "",
    example: dict[str, Any] | None = None,
    data_fingerprint: dict[str, Any] | None = None,
    model_name: str = registry.MODEL_NAME,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    decision: GateDecision | None = None,
    version_tags: dict[str, Any] | None = None,
) -> TrackedRun:
    """Log a training run and (optionally) register its model.

    `example` and `data_fingerprint` replace what is otherwise derived from `dataset` (the API example
    body and `fingerprint(dataset)`); `leadscore table` passes both, and `dataset=None`, for a flat export.
    The run is named for what it is (`run_title`) unless `run_name` is given; `params` and `tags` are
    logged on it besides the usual ones (`leadscore retrain`: where the data came from, the feedback counts).

    With `register`, the gate decides against the champion first, then the version is registered (with its
    data and config hashes and the decision as tags, alias `challenger`) and promoted if the gate says so.
    `decision` replaces the gate (`leadscore recalibrate` gates on calibration alone) and `version_tags`
    the data/config identity tags (a recalibration is identified by the version it recalibrated).
    """
    if not os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run` the run (and its experiment) is given
        mlflow.set_experiment(EXPERIMENT)
    model = result.model
    if dataset is None:  # a flat export: the caller derived both from its table
        if data_fingerprint is None or example is None:
            raise ValueError("track() needs the dataset, or both `example` and `data_fingerprint`")
        fp, model.info["example"] = data_fingerprint, example
    else:
        fp = data_fingerprint if data_fingerprint is not None else fingerprint(dataset)
        model.info["example"] = example if example is not None else example_body(dataset, result.rows)
    model.info["package_version"] = package_version()
    # what the gate compares on a tie: is the challenger's data fresher than the champion's?
    model.info["data"] = {"snapshot_at": fp.get("snapshot_at"), "sha256": fp.get("sha256")}
    labels = result.rows["label"].to_numpy()
    with mlflow.start_run(run_name=run_name or run_title(model.family, data_source)) as run:
        run_params = {
            "model": config.model,
            "chosen_family": model.family,
            "policy": config.policy,
            "policy_target": config.policy_target,
            "holdout_fraction": config.holdout_fraction,
            "calibration_fraction": config.calibration_fraction,
            "seed": config.seed,
            "horizon_days": config.definition.horizon_days,
            "n_features": len(model.encoder.features),
            "data_source": data_source[:250],
        }
        run_params.update({f"boosted.{k}": v for k, v in asdict(config.boosted).items()})
        mlflow.log_params({**run_params, **(params or {})})
        mlflow.set_tags(
            {
                "leadscore.version": package_version(),
                "leadscore.family": model.family,
                "leadscore.data.sha256": str(fp.get("sha256")),
                **(tags or {}),
                NOTE: describe(model, fp, data_source, labels),
            }
        )
        training_data = data_input(model, fp, data_source, labels)
        mlflow.log_input(
            training_data,
            context="training",
            tags={
                "rows": str(len(labels)),
                "positives": str(int(labels.sum())),
                "sha256": str(fp.get("sha256")),
            },
        )
        mlflow.log_dict(config.definition.to_dict(), "qualified_definition.json")
        mlflow.log_dict(
            {"features": list(model.encoder.features), "categorical": list(model.encoder.categorical)},
            "features.json",
        )
        mlflow.log_dict(fp, "data_fingerprint.json")
        mlflow.log_dict(model.policy.to_dict(), "handoff_policy.json")
        mlflow.log_dict(leakage or {"suspects": [], "excluded": []}, "leakage.json")
        if result.warnings:  # what the command printed as warnings, kept with the run
            mlflow.log_dict({"warnings": list(result.warnings)}, "warnings.json")
        base_rate = model.info.get("base_rate")
        if base_rate and base_rate["n_before"] and base_rate["n_after"]:  # calibration vs the later holdout
            mlflow.log_metrics(
                {
                    "base_rate.calibration": base_rate["rate_before"],
                    "base_rate.holdout": base_rate["rate_after"],
                    "base_rate.z": base_rate["z"],
                }
            )
            mlflow.set_tag("leadscore.base_rate_shift", str(base_rate["shifted"]).lower())
        metrics = {**(extra_metrics or {}), "candidates": dict(result.candidates.items())}
        mlflow.log_metrics(_flat("", metrics))
        mlflow.log_metrics({"n_train": model.info["n_train"], "n_holdout": model.info["n_holdout"]})
        if model.info.get("weights"):  # inverse-propensity weights were used (docs/models.md)
            mlflow.log_metrics({f"weights_{k}": float(v) for k, v in model.info["weights"].items()})
        if model.info.get("unlabelled"):  # candidate rows left out of the fit for want of a verdict
            mlflow.log_metrics({f"unlabelled_{k}": float(v) for k, v in model.info["unlabelled"].items()})
        hold = result.rows["part"].to_numpy() == "holdout"
        y = labels[hold]
        for name, fig in figures(
            result.holdout_p,
            y,
            result.holdout_contributions,
            model.encoder.features,
            weight=result.holdout_weight,
        ).items():
            mlflow.log_figure(fig, f"plots/{name}")
        with tempfile.TemporaryDirectory() as tmp:
            info, bundle_sha = log_model(model, Path(tmp), estimator=result.estimator)
        # the holdout metrics belong to the logged model and to the data it was judged on (lineage in the UI)
        mlflow.log_metrics(
            _flat("", {"holdout": result.metrics}), model_id=info.model_id, dataset=training_data
        )
        if not register:
            return TrackedRun(run.info.run_id, None, None)
        client = MlflowClient()
        # the gate is decided before anything is registered: a comparison that fails registers nothing
        if decision is None:
            decision = gate(
                model, "new", holdout_values, y, name=model_name, client=client, weight=result.holdout_weight
            )
        mlflow.set_tags(
            {"leadscore.gate.rule": decision.rule, "leadscore.gate.promote": str(decision.promote).lower()}
        )
        version = register_version(
            info.model_uri,
            model_name,
            decision,
            client,
            {
                # the bundle's hash lives in the registry's database, apart from the artifacts
                BUNDLE_SHA256: bundle_sha,
                **(version_tags if version_tags is not None else version_identity(fp, config, model.family)),
            },
        )
        decision = replace(decision, challenger_version=version)
        mlflow.log_dict(decision.to_dict(), "gate_decision.json")
        mlflow.set_tag(
            NOTE,
            describe(
                model, fp, data_source, labels, decision=decision, version=version, model_name=model_name
            ),
        )
        if decision.promote:
            registry.promote(version, name=model_name, client=client, reason=decision.reason)
        log.info("registered %s version %s: %s", model_name, version, decision.reason)
        return TrackedRun(run.info.run_id, version, decision)


def register_version(
    model_uri: str,
    model_name: str,
    decision: GateDecision,
    client: MlflowClient,
    tags: dict[str, Any],
) -> str:
    """Register `model_uri` as a new version, tagged with its gate decision and aliased `challenger`.

    All or nothing: if anything after the version was created fails (a tag, the alias), the version is
    deleted again and the error raised, so no version without its decision is left behind to be promoted.
    """
    version = str(mlflow.register_model(model_uri, model_name, tags=tags).version)
    try:
        tagged = replace(decision, challenger_version=version)
        client.set_model_version_tag(model_name, version, "gate", json.dumps(tagged.to_dict())[:5000])
        client.set_registered_model_alias(model_name, registry.CHALLENGER, version)
    except Exception:
        client.delete_model_version(model_name, version)  # also drops any alias it got
        raise
    return version


# Model-version tags that say what a version was trained on and how (`leadscore retrain` finds a version
# trained on the same data with the same settings by them and does not train again)
DATA_SHA256, CONFIG_SHA256, MODEL_CHOICE, FAMILY = "data_sha256", "config_sha256", "model_choice", "family"


def config_sha256(config: TrainConfig) -> str:
    """A hash of everything in `config` that shapes the model but the family choice (`config.model`, kept
    apart in the `model_choice` tag: `auto` may have picked the family that is asked for by name later)."""
    d = asdict(config)
    d.pop("model")
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def version_identity(fp: dict[str, Any], config: TrainConfig, family: str) -> dict[str, Any]:
    return {
        DATA_SHA256: str(fp.get("sha256")),
        CONFIG_SHA256: config_sha256(config),
        MODEL_CHOICE: config.model,
        FAMILY: family,
    }
