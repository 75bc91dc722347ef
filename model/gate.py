"""The gate between a new version and the champion. It compares the challenger with the champion on the
challenger's holdout rows (paired-bootstrap 95 % interval of the ROC AUC difference, challenger - champion;
expected calibration error) and applies one rule, named in the decision (`GateDecision.rule`):

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from leadscore.model import evaluate
from leadscore.model.registry import CHAMPION, MODEL_NAME, alias_version, load_scoring_model
from leadscore.model.scoring import ScoringModel
from mlflow import MlflowClient

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
