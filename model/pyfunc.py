"""The MLflow pyfunc flavour of a Leadscore model: one artifact holding feature spec, model, explainer and
policy, loadable with `mlflow.pyfunc.load_model` (and so by `mlflow models serve` and `spark_udf`).

Logged as models-from-code (`log_model`): the pyfunc's code is the file `pyfunc_code.py`, and its only
artifact is the data bundle `artifacts/bundle` (`persist`), so a logged model holds no pickle. The bundle's
SHA-256 is written into the MLmodel metadata (`BUNDLE_SHA256`).

Input (`INPUT_SCHEMA`, docs/scale.md): one row per lead, every column present (so `spark_udf(...)()` works
without naming them; `pyfunc_input` builds the frame): `lead_id`, `created_at`, the lead attributes
(strings, null when unknown), `events` (null, a JSON list or a list/array of {"type", "timestamp",
"page"}: Spark's `array<struct>`) and `as_of`, the moment the lead is scored as of. `as_of` is required in
every row: a default of "now" would differ between two runs, or two retries of one Spark task. Times must
carry their offset (ISO-8601 with Z or +hh:mm, or time-zone-aware timestamps): a naive one is refused.
Exact duplicate events are removed with the loader's rule. Output (`OUTPUT_SCHEMA`): one row per lead
with what `leadscore score` gives (as_of as ISO-8601 UTC, probability, score, grade, qualified, explored,
propensity, insight: "" when none) and `reasons` as a list of {feature, value, impact, points, text}
(`array<struct>` in Spark), strongest first; `out_of_range` is a JSON list ("[]" when none).

A model trained on a flat export (`leadscore table`, `info["input"] == "flat"`) takes that export's columns
instead, one row per lead (`info["flat"]` holds the column kinds and missing markers it was trained with).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
from leadscore.features import schema as S
from leadscore.features.live import to_ms
from leadscore.model import persist
from leadscore.model.environment import model_environment
from leadscore.model.inputs import InputError
from leadscore.model.scoring import ScoringModel
from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc.model import PythonModel, PythonModelContext
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Object, Property, Schema

if TYPE_CHECKING:
    from leadscore.features.loading import Dataset

INPUT_COLUMNS = (S.LEAD_ID, S.CREATED_AT, *S.LEAD_ATTRIBUTES, "events", "as_of")
CODE_PATH = Path(__file__).with_name("pyfunc_code.py")
BUNDLE = "bundle"  # the artifact's name; MLflow stores it at artifacts/bundle in the model
BUNDLE_SHA256 = "bundle_sha256"  # MLmodel metadata key and model-version tag

# every column required to be present (values may be null where said): a signature with an optional column
# makes `spark_udf(...)()` refuse to run without the columns named; times are `Any` so that both ISO
# strings and time-zone-aware timestamps reach the pyfunc, which refuses naive ones with the lead's id
_ANY = AnyType()  # type: ignore[no-untyped-call]  # MLflow's class has an untyped __init__
INPUT_SCHEMA = Schema(
    [
        ColSpec(DataType.string, S.LEAD_ID),
        ColSpec(_ANY, S.CREATED_AT),
        *(ColSpec(DataType.string, a) for a in S.LEAD_ATTRIBUTES),
        ColSpec(_ANY, "events"),
        ColSpec(_ANY, "as_of"),
    ]
)
REASON = Object(
    [
        Property("feature", DataType.string),
        Property("value", DataType.string, required=False),
        Property("impact", DataType.double),
        Property("points", DataType.long),
        Property("text", DataType.string),
    ]
)
OUTPUT_SCHEMA = Schema(
    [
        ColSpec(DataType.string, "lead_id"),
        ColSpec(DataType.string, "as_of"),
        ColSpec(DataType.double, "probability"),
        ColSpec(DataType.long, "score"),
        ColSpec(DataType.string, "grade"),
        ColSpec(DataType.boolean, "qualified"),
        ColSpec(DataType.boolean, "explored"),
        ColSpec(DataType.double, "propensity"),
        ColSpec(DataType.string, "insight"),
        ColSpec(Array(REASON), "reasons"),
        ColSpec(DataType.string, "out_of_range"),
    ]
)


class LeadscorePyfunc(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        self.model: ScoringModel = persist.load(Path(context.artifacts[BUNDLE]))

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        flat = self.model.info.get("input") == "flat"
        if not flat and "as_of" not in model_input.columns:
            raise _invalid("as_of: missing column (the moment each lead is scored as of)")
        if not flat and len(model_input) and (missing := model_input["as_of"].isna()).any():
            lead = model_input[S.LEAD_ID].iloc[int(missing.to_numpy().argmax())]
            raise _invalid(f"lead {lead!r}, as_of: missing (each row needs the moment it is scored as of)")
        try:
            scored = self.model.score(model_input)  # a flat row without as_of: as of now, as documented
        except InputError as e:
            raise _invalid(str(e)) from None
        results = scored.results
        return pd.DataFrame(
            {
                "lead_id": [r["lead_id"] for r in results],
                "as_of": [_iso(t) for t in scored.as_of],
                "probability": [r["probability"] for r in results],
                "score": [r["score"] for r in results],
                "grade": [r["grade"] for r in results],
                "qualified": [r["qualified"] for r in results],
                "explored": [r["explored"] for r in results],
                "propensity": [r["propensity"] for r in results],
                # "" rather than null: spark_udf turns a null string of a struct result into "None"
                "insight": [r["insight"] or "" for r in results],
                "reasons": [[_reason(x) for x in r["reasons"]] for r in results],
                # values outside the training range, as the API's `out_of_range` (a JSON list, "[]" when none)
                "out_of_range": [json.dumps(r.get("out_of_range") or []) for r in results],
            }
        )


def _invalid(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _iso(moment: Any) -> str:
    """A moment as ISO-8601 UTC to the millisecond, as `leadscore score` keeps it."""
    return str(np.datetime_as_string(np.datetime64(to_ms(moment), "ms"), unit="ms")) + "Z"


def _reason(reason: Mapping[str, Any]) -> dict[str, Any]:
    value = reason["value"]
    return {**reason, "value": None if value is None else str(value)}


def pyfunc_input(data: Dataset | tuple[pd.DataFrame, pd.DataFrame], as_of: Any) -> pd.DataFrame:
    """The pyfunc's input for every lead of `data` created before `as_of` (as `leadscore score` picks
    them): a loaded `Dataset`, or raw (leads, events) frames in the data model, which are first validated
    by the loader (its timestamp rules and duplicate removal: `loading.dataset_from_frames`).
    For Spark DataFrames: `leadscore.spark.pyfunc_input`."""
    from leadscore.features.loading import Dataset, dataset_from_frames
    from leadscore.model.batch import lead_rows

    if not isinstance(data, Dataset):
        leads, events = data
        data = dataset_from_frames(leads, pa.Table.from_pandas(events, preserve_index=False))
    moment = pd.Timestamp(as_of)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    rows = lead_rows(data, moment)
    leads = data.leads.set_index(S.LEAD_ID, drop=False).loc[rows[S.LEAD_ID]]
    ev = data.events
    code = ev[S.LEAD_ID].cat.codes.to_numpy()
    order = np.argsort(code, kind="stable")
    stamps = np.datetime_as_string(ev[S.TIMESTAMP].to_numpy(dtype="datetime64[ms]")[order], unit="ms")
    types = ev[S.EVENT_TYPE].astype(object).to_numpy()[order]
    pages = ev[S.PAGE].astype(object).where(ev[S.PAGE].notna(), None).to_numpy()[order]
    bounds = np.searchsorted(code[order], np.arange(len(data.leads) + 1))
    row_of = pd.Index(data.leads[S.LEAD_ID]).get_indexer(rows[S.LEAD_ID])
    events = [
        [
            {"type": types[k], "timestamp": f"{stamps[k]}Z", "page": pages[k]}
            for k in range(bounds[i], bounds[i + 1])
        ]
        for i in row_of
    ]
    created = leads[S.CREATED_AT].to_numpy(dtype="datetime64[ms]")
    frame = {
        S.LEAD_ID: rows[S.LEAD_ID].to_numpy(dtype=object),
        S.CREATED_AT: [f"{t}Z" for t in np.datetime_as_string(created, unit="ms")],
        **{a: leads[a].astype(object).where(leads[a].notna(), None).to_numpy() for a in S.LEAD_ATTRIBUTES},
        "events": events,
        "as_of": _iso(moment.to_pydatetime()),
    }
    return pd.DataFrame(frame, columns=list(INPUT_COLUMNS))


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


def log_model(model: ScoringModel, workdir: Path, estimator: object = None) -> tuple[ModelInfo, str]:
    """Log `model` into the active run as the pyfunc `model` (models-from-code, no pickle); return
    `(ModelInfo, bundle_sha256)`. `workdir` is a scratch folder for the bundle. The model carries the
    leadscore wheel and pins its dependencies (`environment.model_environment`), so MLflow can rebuild its
    environment (`env_manager="uv"`)."""
    bundle = persist.save(model, Path(workdir) / BUNDLE, estimator=estimator)
    sha = persist.digest(bundle)
    example = model.info.get("example")
    frame = example_frame(example) if example else None
    signature = None
    if model.info.get("input") != "flat":
        signature = ModelSignature(inputs=INPUT_SCHEMA, outputs=OUTPUT_SCHEMA)
    elif frame is not None:  # a flat export's columns are the model's own: inferred from its example
        scorer = LeadscorePyfunc()
        scorer.model = model
        signature = infer_signature(frame, scorer.predict(None, frame))
    pip_requirements, code_paths = model_environment()
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(CODE_PATH),
        artifacts={BUNDLE: str(bundle)},
        signature=signature,
        input_example=frame,
        pip_requirements=pip_requirements,
        code_paths=code_paths,
        metadata={BUNDLE_SHA256: sha},
    )
    return info, sha
