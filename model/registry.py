"""The MLflow model registry: versions of `leadscore`, the `champion` the service serves, the
`challenger` a new version starts as, and the gate between them.

The gate compares a challenger with the champion on the challenger's holdout rows (paired-bootstrap 95 %
interval of the ROC AUC difference, challenger - champion; expected calibration error) and applies one rule,
named in the decision (`GateDecision.rule`):

- `first`: no champion yet, the first version becomes champion;
- `worse`: the interval is below 0 (worse beyond noise): kept the champion;
- `worse_calibrated`: the challenger's ECE is worse by more than `ECE_TOLERANCE`: kept the champion;
- `better`: the interval is above 0 (better beyond noise): promoted;
- on a tie (the interval contains 0) the challenger is promoted only if it is the same family, for the same
  qualified-lead definition, trained on fresher data (a later data snapshot): rule `fresher`; otherwise
  rule `tie` and the champion stays, so a scheduled retrain does not flip between near-equal models and
  never switches family on noise;
- `incomparable`: the two cannot score the same rows (the champion needs a column the challenger's
  holdout lacks, or cannot score it): kept the champion, with the columns named. When the columns differ
  but the holdout has all the champion's, the champion is scored on its own columns and the decision says so.

Each promotion records the champion it replaced, so `rollback` can restore it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from leadscore.model import evaluate, persist, pyfunc
from leadscore.model.scoring import ScoringModel
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME

log = logging.getLogger(__name__)
MODEL_NAME = "leadscore"
FLAT_MODEL_NAME = (
    "leadscore-flat"  # models trained on flat exports (`leadscore table`) score export rows, not events
)
CHAMPION, CHALLENGER = "champion", "challenger"
ECE_TOLERANCE = 0.01


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    challenger_version: str
    champion_version: str | None = None
    auc_diff: float | None = None
    auc_diff_low: float | None = None
    auc_diff_high: float | None = None
    ece_challenger: float | None = None
    ece_champion: float | None = None
    rule: str = ""  # first | better | fresher | worse | worse_calibrated | tie | incomparable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alias_version(alias: str, name: str = MODEL_NAME, client: MlflowClient | None = None) -> str | None:
    client = client or MlflowClient()
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_scoring_model(uri: str) -> ScoringModel:
    """The native `ScoringModel` inside a logged pyfunc (models:/leadscore@champion, models:/leadscore/3,
    runs:/<id>/model, a local folder), loaded from its data bundle alone.

    Nothing is unpickled and no code from the model runs: only `MLmodel` (YAML, read safely) and the bundle
    (`artifacts/bundle`: JSON and a pickle-free .npz) are downloaded, whatever else the version holds (a
    `python_model.pkl` of a version logged before models-from-code is never read). The bundle must hash to
    the SHA-256 recorded for it: the model version's `bundle_sha256` tag (kept in the registry's database,
    apart from the artifact store), else the MLmodel metadata. A version without either (logged before the
    hash existed) loads with a warning. Raises `persist.BundleError` (or MLflow's error) saying why not.
    """
    name, version = _registered(uri)
    if name is not None:
        uri = f"models:/{name}/{version}"  # resolve an alias once: every file below is from one version
    root = uri.rstrip("/")
    with tempfile.TemporaryDirectory(
        prefix="leadscore-model-"
    ) as tmp:  # nothing downloaded outlives the load
        mlmodel = Model.load(
            mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/{MLMODEL_FILE_NAME}", dst_path=tmp)
        )
        artifacts = (mlmodel.flavors.get("python_function") or {}).get("artifacts") or {}
        bundle_path = (artifacts.get(pyfunc.BUNDLE) or {}).get("path")
        if not bundle_path:
            raise persist.BundleError(
                f"{uri} is not a Leadscore model: its MLmodel lists no '{pyfunc.BUNDLE}' artifact"
            )
        if Path(bundle_path).is_absolute() or ".." in Path(bundle_path).parts:
            raise persist.BundleError(f"{uri}: its bundle path {bundle_path!r} points outside the model")
        expected = None
        if name is not None and version is not None:
            expected = MlflowClient().get_model_version(name, version).tags.get(pyfunc.BUNDLE_SHA256)
        expected = expected or (mlmodel.metadata or {}).get(pyfunc.BUNDLE_SHA256)
        if expected is None:
            log.warning(
                "%s records no bundle SHA-256 (logged before Leadscore recorded one): loading unverified", uri
            )
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/{bundle_path}", dst_path=tmp)
        except (MlflowException, OSError) as e:
            raise persist.BundleError(
                f"{uri}: its model bundle ({bundle_path}) cannot be read: {type(e).__name__}: {str(e)[:300]}"
            ) from e
        model = persist.load(Path(local), expected_sha256=expected)
    model.version = version
    return model


def _registered(uri: str) -> tuple[str | None, str | None]:
    """(name, version) of a models:/ URI (an alias resolved now), else (None, None)."""
    if not uri.startswith("models:/"):
        return None, None
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        version = alias_version(alias, name)
        if version is None:
            raise MlflowException(f"registered model {name!r} has no version with alias {alias!r}")
        return name, version
    name, _, version = rest.partition("/")
    return name, version


def gate(
    challenger: ScoringModel,
    version: str,
    holdout_values: Mapping[str, np.ndarray],
    y: np.ndarray,
    name: str = MODEL_NAME,
    client: MlflowClient | None = None,
    weight: np.ndarray | None = None,
) -> GateDecision:
    """Compare `challenger` (registered as `version`) with the champion of `name` on the challenger's holdout
    (`weight`: the rows' inverse-propensity weights, so both are judged on the population)."""
    client = client or MlflowClient()
    champ_version = alias_version(CHAMPION, name, client)
    if champ_version is None:
        return GateDecision(
            True, "no champion yet: the first version becomes champion", version, rule="first"
        )
    try:
        champion = load_scoring_model(f"models:/{name}/{champ_version}")
    except Exception as e:  # noqa: BLE001 - a champion that cannot load cannot be compared with
        return GateDecision(
            False,
            f"the champion (version {champ_version}) cannot be loaded to compare with "
            f"({type(e).__name__}: {str(e)[:300]}); promote by hand if intended",
            version,
            champ_version,
            rule="incomparable",
        )
    return compare(challenger, champion, holdout_values, y, version, champ_version, weight=weight)


def compare(
    challenger: ScoringModel,
    champion: ScoringModel,
    holdout_values: Mapping[str, np.ndarray],
    y: np.ndarray,
    challenger_version: str = "challenger",
    champion_version: str | None = "champion",
    weight: np.ndarray | None = None,
) -> GateDecision:
    """The gate's decision between two models on the challenger's holdout rows (`holdout_values`: column
    -> values, `y`: labels). The rules are in the module's docstring."""
    needed = tuple(champion.encoder.features)
    lacking = [c for c in needed if c not in holdout_values]
    columns_note = _columns_note(challenger, champion)
    if lacking:
        shown = ", ".join(map(repr, lacking[:5])) + (
            f" and {len(lacking) - 5} more" if len(lacking) > 5 else ""
        )
        return GateDecision(
            False,
            f"{columns_note}; the champion needs {shown}, which the challenger's holdout "
            "does not have, so the two cannot be compared on the same rows: kept the champion "
            "(promote by hand if the new columns are intended)",
            rule="incomparable",
            challenger_version=challenger_version,
            champion_version=champion_version,
        )
    try:
        p_new = challenger.explain(holdout_values).probability
        p_old = champion.explain({c: holdout_values[c] for c in needed}).probability
    except (TypeError, ValueError) as e:  # e.g. a column that changed kind (text where numbers were)
        return GateDecision(
            False,
            f"{columns_note + '; ' if columns_note else ''}the champion cannot score the "
            f"challenger's holdout ({type(e).__name__}: {str(e)[:200]}): kept the champion",
            rule="incomparable",
            challenger_version=challenger_version,
            champion_version=champion_version,
        )
    cmp = evaluate.paired_bootstrap_auc(y, p_new, p_old, weight=weight)
    ece_new, ece_old = evaluate.ece(p_new, y, weight=weight), evaluate.ece(p_old, y, weight=weight)
    promote, rule, reason = decide(cmp, ece_new, ece_old, challenger, champion)
    if columns_note:
        reason = f"{columns_note} (the champion was scored on its own columns); {reason}"
    return GateDecision(
        promote,
        reason,
        auc_diff=cmp["diff"],
        auc_diff_low=cmp["low"],
        auc_diff_high=cmp["high"],
        ece_challenger=ece_new,
        ece_champion=ece_old,
        rule=rule,
        challenger_version=challenger_version,
        champion_version=champion_version,
    )


def decide(
    cmp: Mapping[str, Any], ece_new: float, ece_old: float, challenger: ScoringModel, champion: ScoringModel
) -> tuple[bool, str, str]:
    """(promote, rule, reason) from the paired-bootstrap comparison `cmp` (challenger - champion ROC AUC:
    diff, low, high), both ECEs, and what the two models are (family, definition, data snapshot)."""
    auc = f"ROC AUC {cmp['diff']:+.4f} (95 % {cmp['low']:+.4f} .. {cmp['high']:+.4f})"
    if cmp["high"] < 0:
        return False, "worse", f"challenger is worse beyond noise: {auc}"
    if ece_new > ece_old + ECE_TOLERANCE:
        return (
            False,
            "worse_calibrated",
            (
                f"challenger is worse calibrated (ECE {ece_new:.4f} vs {ece_old:.4f}, "
                f"tolerance {ECE_TOLERANCE}); {auc}"
            ),
        )
    if cmp["low"] > 0:
        return True, "better", f"challenger is better beyond noise: {auc}, and not worse calibrated"
    tie = f"a tie ({auc}: within noise)"
    if challenger.family != champion.family:
        return (
            False,
            "tie",
            (
                f"{tie} between families: kept the champion's {champion.family} rather than switch "
                f"to {challenger.family} on noise"
            ),
        )
    if challenger.definition != champion.definition:
        return False, "tie", f"{tie}, and the qualified-lead definitions differ: kept the champion"
    fresher, why = _fresher(challenger.info.get("data") or {}, champion.info.get("data") or {})
    if not fresher:
        return False, "tie", f"{tie}, and the challenger's data is not fresher ({why}): kept the champion"
    return True, "fresher", f"{tie}, same family and definition, and the challenger's data is fresher ({why})"


def _fresher(new: Mapping[str, Any], old: Mapping[str, Any]) -> tuple[bool, str]:
    a, b = new.get("snapshot_at"), old.get("snapshot_at")
    if not a or not b:
        return False, "no data snapshot time to compare"
    ta, tb = pd.Timestamp(a), pd.Timestamp(b)
    if ta > tb:
        return True, f"snapshot {ta:%Y-%m-%d %H:%M} after {tb:%Y-%m-%d %H:%M}"
    return False, f"snapshot {ta:%Y-%m-%d %H:%M}, champion's {tb:%Y-%m-%d %H:%M}"


def _columns_note(challenger: ScoringModel, champion: ScoringModel) -> str:
    new, old = set(challenger.encoder.features), set(champion.encoder.features)
    if new == old:
        return ""
    parts = []
    if old - new:
        parts.append("drops " + ", ".join(map(repr, sorted(old - new))))
    if new - old:
        parts.append("adds " + ", ".join(map(repr, sorted(new - old))))
    return "the challenger's columns differ from the champion's (it " + " and ".join(parts) + ")"


def promote(
    version: str, name: str = MODEL_NAME, client: MlflowClient | None = None, reason: str = "manual"
) -> None:
    client = client or MlflowClient()
    previous = alias_version(CHAMPION, name, client)
    if previous == str(version):
        return
    client.get_model_version(name, str(version))  # raises if it does not exist
    if previous is not None:
        client.set_model_version_tag(name, str(version), "previous_champion", previous)
    client.set_model_version_tag(name, str(version), "promotion_reason", reason[:500])
    client.set_registered_model_alias(name, CHAMPION, str(version))
    if alias_version(CHALLENGER, name, client) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    log.info("model %s version %s is now champion (was %s)", name, version, previous)


def rollback(name: str = MODEL_NAME, client: MlflowClient | None = None) -> str:
    """Make the champion's predecessor champion again; return its version."""
    client = client or MlflowClient()
    current = alias_version(CHAMPION, name, client)
    if current is None:
        raise ValueError(f"model {name!r} has no champion to roll back")
    previous = client.get_model_version(name, current).tags.get("previous_champion")
    if not previous:
        raise ValueError(f"champion version {current} replaced no earlier champion: nothing to roll back to")
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, current, "rolled_back", "true")
    log.info("rolled back %s: champion %s -> %s", name, current, previous)
    return previous
