"""Everything a training run leaves in MLflow: a name and description saying what the run is, the training
data as a dataset input (digest = data fingerprint), the qualified-lead definition, feature list, params,
metrics, plots, leakage report, package version, and the registered pyfunc model with its gate decision."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from leadscore.features import schema as S
from leadscore.features.loading import Dataset
from leadscore.model import registry
from leadscore.model.evaluate import figures
from leadscore.model.pyfunc import BUNDLE_SHA256, log_model
from leadscore.model.scoring import ScoringModel
from leadscore.model.train import TrainConfig, TrainResult
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.types import ColSpec, DataType, Schema, TensorSpec

log = logging.getLogger(__name__)
EXPERIMENT = "leadscore"


def package_version() -> str:
    try:
        return pkg_version("leadscore")
    except PackageNotFoundError:
        return "0+unknown"


def fingerprint(dataset: Dataset) -> dict[str, Any]:
    """Row counts, time range and a content hash of the data a model was trained on."""
    h = hashlib.sha256()
    for df in (dataset.leads, dataset.events, dataset.outcomes):
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    ev = dataset.events[S.TIMESTAMP]
    return {
        "n_leads": len(dataset.leads),
        "n_events": len(dataset.events),
        "n_outcomes": len(dataset.outcomes),
        "first_lead": str(dataset.leads[S.CREATED_AT].min()),
        "last_lead": str(dataset.leads[S.CREATED_AT].max()),
        "first_event": str(ev.min()) if len(ev) else None,
        "last_event": str(ev.max()) if len(ev) else None,
        "snapshot_at": str(dataset.snapshot_at),
        "sha256": h.hexdigest(),
    }


def example_body(dataset: Dataset, rows: pd.DataFrame) -> dict[str, Any]:
    """A valid POST /v1/score body: a holdout lead with its events before its as_of moment."""
    hold = rows[rows["part"] == "holdout"]
    pick = hold.sort_values(["label", "as_of"], ascending=[False, False]).iloc[0]
    lead = dataset.leads.set_index(S.LEAD_ID).loc[pick[S.LEAD_ID]]
    ev = dataset.events[
        (dataset.events[S.LEAD_ID] == pick[S.LEAD_ID]) & (dataset.events[S.TIMESTAMP] < pick["as_of"])
    ]
    events = [
        {
            "type": t,
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
            **({"page": p} if isinstance(p, str) else {}),
        }
        for t, ts, p in zip(ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE], strict=False)
    ]
    attrs = {a: lead[a] for a in S.LEAD_ATTRIBUTES if isinstance(lead.get(a), str)}
    return {
        "leads": [
            {
                "lead_id": str(pick[S.LEAD_ID]),
                "created_at": lead[S.CREATED_AT].isoformat().replace("+00:00", "Z"),
                "as_of": pick["as_of"].isoformat().replace("+00:00", "Z"),
                "attributes": attrs,
                "events": events,
            }
        ]
    }


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    version: str | None
    decision: registry.GateDecision | None


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
    decision: registry.GateDecision | None = None,
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
            info, bundle_sha = log_model(
                model,
                Path(tmp),
                estimator=result.estimator,
                pip_requirements=[f"leadscore=={package_version()}"],
            )
        # the holdout metrics belong to the logged model and to the data it was judged on (lineage in the UI)
        mlflow.log_metrics(
            _flat("", {"holdout": result.metrics}), model_id=info.model_id, dataset=training_data
        )
        if not register:
            return TrackedRun(run.info.run_id, None, None)
        client = MlflowClient()
        # the gate is decided before anything is registered: a comparison that fails registers nothing
        if decision is None:
            decision = registry.gate(
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
    decision: registry.GateDecision,
    client: MlflowClient,
    tags: dict[str, Any],
) -> str:
    """Register `model_uri` as a new version, tagged with its gate decision and aliased `challenger`.

    All or nothing: if anything after the version was created fails (a tag, the alias), the version is
    deleted again and the error raised, so no version without its decision is left behind to be promoted.
    """
    version = str(mlflow.register_model(model_uri, model_name, tags=tags).version)
    try:
        gate = replace(decision, challenger_version=version)
        client.set_model_version_tag(model_name, version, "gate", json.dumps(gate.to_dict())[:5000])
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


NOTE = "mlflow.note.content"  # the run's description in the MLflow UI
DIGEST_CHARS = 36  # MLflow's dataset digest column holds 36 characters: the fingerprint's first 36 hex digits


def data_name(data_source: str) -> str:
    """A short name for the data: the folder or file name without suffix ("demo", "x-education-leads")."""
    return Path(data_source.rstrip("/")).stem if data_source else "data"


def run_title(family: str, data_source: str) -> str:
    """'scorecard · demo · 2026-11-28': what a run is, readable in the MLflow run list."""
    return f"{family} · {data_name(data_source)} · {datetime.now(UTC):%Y-%m-%d}"


def describe(
    model: ScoringModel,
    fp: dict[str, Any],
    data_source: str,
    labels: np.ndarray,
    decision: registry.GateDecision | None = None,
    version: str | None = None,
    model_name: str = registry.MODEL_NAME,
) -> str:
    """The run's description (Markdown): the target, the data, the result and the gate's decision."""
    d = model.definition
    if model.info.get("input") == "flat":
        target = f"flat export label `{fp.get('label')}` = {fp.get('positive')!r}"
    else:
        target = f"qualified = {' / '.join(d.positive)} within {d.horizon_days} days"
    m = model.info["metrics"]["holdout"]
    lines = [
        f"**{model.family}** model. Target: {target}.",
        f"Data: `{data_source or 'unknown'}`, SHA-256 `{str(fp.get('sha256'))[:12]}`, "
        f"{len(labels):,} training rows ({int(labels.sum()):,} positive)"
        + (f", snapshot {fp['snapshot_at']}" if fp.get("snapshot_at") else "")
        + ".",
        f"Holdout: ROC AUC {m['roc_auc']:.4f}, ECE {m['ece']:.4f} ({model.info['n_holdout']:,} rows).",
    ]
    if decision is not None:
        verdict = "promoted to champion" if decision.promote else "stays challenger"
        lines.append(
            f"Gate: {model_name} version {version} {verdict} (rule `{decision.rule}`): {decision.reason}"
        )
    return "\n\n".join(lines)


def data_input(model: ScoringModel, fp: dict[str, Any], data_source: str, labels: np.ndarray) -> MetaDataset:
    """The training data as an MLflow dataset: its source, the fingerprint as digest, and the schema the model
    reads (features and label). Row and positive counts go in the input's tags."""
    cols: list[ColSpec | TensorSpec] = [
        ColSpec(DataType.string if f in model.encoder.categorical else DataType.double, f)
        for f in model.encoder.features
    ]
    cols.append(ColSpec(DataType.long, "label"))
    source: DatasetSource = CodeDatasetSource({})
    if data_source:
        with warnings.catch_warnings():  # MLflow registers its local source for two schemes and says so
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            source = resolve_dataset_source(Path(data_source).resolve().as_uri())
    # Dataset declares `profile` abstract without ABCMeta; MetaDataset is instantiable at runtime
    return MetaDataset(  # type: ignore[abstract]
        source, name=data_name(data_source), digest=str(fp.get("sha256"))[:DIGEST_CHARS], schema=Schema(cols)
    )
