"""The MLflow pyfunc flavour of a Leadscore model: one artifact holding feature spec, model, explainer and
policy, loadable with `mlflow.pyfunc.load_model` (and so by `mlflow models serve` and `spark_udf`).

Logged as models-from-code (`log_model`): the pyfunc's code is the file `pyfunc_code.py`, and its only
artifact is the data bundle `artifacts/bundle` (`persist`), so a logged model holds no pickle. The bundle's
SHA-256 is written into the MLmodel metadata (`BUNDLE_SHA256`).

Input: one row per lead with `lead_id`, `created_at` (ISO-8601), the lead attributes, `events` (a JSON list
of {"type", "timestamp", "page"}) and optionally `as_of` (ISO-8601; default: now). Output: one row per
lead with probability, score, grade, qualified and `reasons` (a JSON list).

A model trained on a flat export (`leadscore table`, `info["input"] == "flat"`) takes that export's columns
instead, one row per lead (`info["flat"]` holds the column kinds and missing markers it was trained with).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from leadscore.features import schema as S
from leadscore.model import persist
from leadscore.model.scoring import ScoringModel
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc.model import PythonModel, PythonModelContext

INPUT_COLUMNS = (S.LEAD_ID, S.CREATED_AT, *S.LEAD_ATTRIBUTES, "events", "as_of")
CODE_PATH = Path(__file__).with_name("pyfunc_code.py")
BUNDLE = "bundle"  # the artifact's name; MLflow stores it at artifacts/bundle in the model
BUNDLE_SHA256 = "bundle_sha256"  # MLmodel metadata key and model-version tag


class LeadscorePyfunc(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        self.model: ScoringModel = persist.load(Path(context.artifacts[BUNDLE]))

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        results = self.model.score(model_input).results  # as of each row's `as_of`, else now
        return pd.DataFrame(
            {
                "lead_id": [r["lead_id"] for r in results],
                "probability": [r["probability"] for r in results],
                "score": [r["score"] for r in results],
                "grade": [r["grade"] for r in results],
                "qualified": [r["qualified"] for r in results],
                "reasons": [json.dumps(r["reasons"]) for r in results],
                # values outside the training range, as the API's `out_of_range` (a JSON list, "[]" when none)
                "out_of_range": [json.dumps(r.get("out_of_range") or []) for r in results],
            }
        )


def example_frame(example_body: dict[str, Any]) -> pd.DataFrame:
    """The pyfunc input equivalent of an API example body (see `serve`), or of a flat example
    {"rows": [...]}."""
    if "rows" in example_body:
        return pd.DataFrame(example_body["rows"])
    rows = []
    for lead in example_body["leads"]:
        row = {S.LEAD_ID: lead["lead_id"], S.CREATED_AT: lead["created_at"]}
        row.update({a: (lead.get("attributes") or {}).get(a) for a in S.LEAD_ATTRIBUTES})
        row["events"] = json.dumps(lead.get("events") or [])
        row["as_of"] = lead.get("as_of")
        rows.append(row)
    return pd.DataFrame(rows, columns=list(INPUT_COLUMNS))


def log_model(
    model: ScoringModel, workdir: Path, estimator: object = None, pip_requirements: list[str] | None = None
) -> tuple[ModelInfo, str]:
    """Log `model` into the active run as the pyfunc `model` (models-from-code, no pickle); return
    `(ModelInfo, bundle_sha256)`. `workdir` is a scratch folder for the bundle."""
    bundle = persist.save(model, Path(workdir) / BUNDLE, estimator=estimator)
    sha = persist.digest(bundle)
    example = model.info.get("example")
    frame = example_frame(example) if example else None
    signature = None
    if frame is not None:
        scorer = LeadscorePyfunc()
        scorer.model = model
        signature = infer_signature(frame, scorer.predict(None, frame))
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(CODE_PATH),
        artifacts={BUNDLE: str(bundle)},
        signature=signature,
        input_example=frame,
        pip_requirements=list(pip_requirements or []),
        metadata={BUNDLE_SHA256: sha},
    )
    return info, sha
