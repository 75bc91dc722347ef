"""What a training run records about itself and its data: the package version, the data's fingerprint, an
example request body, the run's title and description (Markdown, shown in the MLflow UI), and the training
data as an MLflow dataset input (digest = the fingerprint)."""

from __future__ import annotations

import hashlib
import warnings
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from leadscore.features import schema as S
from leadscore.features.loading import Dataset
from leadscore.model import registry
from leadscore.model.gate import GateDecision
from leadscore.model.scoring import ScoringModel
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.types import ColSpec, DataType, Schema, TensorSpec


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
    decision: GateDecision | None = None,
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
