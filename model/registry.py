"""The MLflow model registry: versions of `leadscore`, the `champion` the service serves, the
`challenger` a new version starts as, and the gate between them.

A challenger becomes champion only if, on the challenger's holdout, its ROC AUC is not worse than the
champion's beyond noise (the paired-bootstrap 95 % interval of the difference reaches 0 or above) and its
expected calibration error is not worse by more than `ECE_TOLERANCE`. Each promotion records the champion
it replaced, so `rollback` can restore it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from leadscore.model import evaluate
from leadscore.model.scoring import ScoringModel

log = logging.getLogger(__name__)
MODEL_NAME = "leadscore"
FLAT_MODEL_NAME = "leadscore-flat"  # models trained on flat exports (`leadscore table`) score export rows, not events
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

    def to_dict(self) -> dict:
        return asdict(self)


def alias_version(alias: str, name: str = MODEL_NAME, client: MlflowClient | None = None) -> str | None:
    client = client or MlflowClient()
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_scoring_model(uri: str) -> ScoringModel:
    """The native `ScoringModel` inside a registered pyfunc (e.g. models:/leadscore@champion)."""
    loaded = mlflow.pyfunc.load_model(uri)
    model = loaded.unwrap_python_model().model
    model.version = _version_of(uri)
    return model


def _version_of(uri: str) -> str | None:
    if not uri.startswith("models:/"):
        return None
    rest = uri.removeprefix("models:/")
    name, _, ref = rest.partition("@") if "@" in rest else rest.partition("/")
    if "@" in rest:
        return alias_version(ref, name)
    return ref or None


def gate(challenger: ScoringModel, version: str, holdout_values: dict, y: np.ndarray,
         name: str = MODEL_NAME, client: MlflowClient | None = None) -> GateDecision:
    """Compare `challenger` (registered as `version`) with the champion on the same holdout rows."""
    client = client or MlflowClient()
    champ_version = alias_version(CHAMPION, name, client)
    if champ_version is None:
        return GateDecision(True, "no champion yet: the first version becomes champion", version)
    champion = load_scoring_model(f"models:/{name}/{champ_version}")
    p_new = challenger.explain(holdout_values).probability
    p_old = champion.explain(holdout_values).probability
    cmp = evaluate.paired_bootstrap_auc(y, p_new, p_old)
    ece_new, ece_old = evaluate.ece(p_new, y), evaluate.ece(p_old, y)
    auc_ok = cmp["high"] >= 0
    ece_ok = ece_new <= ece_old + ECE_TOLERANCE
    if auc_ok and ece_ok:
        reason = "challenger is not worse than the champion on ROC AUC (beyond noise) nor on calibration"
    elif not auc_ok:
        reason = f"challenger's ROC AUC is worse beyond noise (diff {cmp['diff']:+.4f}, 95 % up to {cmp['high']:+.4f})"
    else:
        reason = f"challenger is worse calibrated (ECE {ece_new:.4f} vs {ece_old:.4f})"
    return GateDecision(auc_ok and ece_ok, reason, version, champ_version, cmp["diff"], cmp["low"], cmp["high"],
                        ece_new, ece_old)


def promote(version: str, name: str = MODEL_NAME, client: MlflowClient | None = None, reason: str = "manual") -> None:
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


def decision_json(d: GateDecision) -> str:
    return json.dumps(d.to_dict(), indent=1)
