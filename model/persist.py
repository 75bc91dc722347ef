"""Save and load a `ScoringModel` as a directory: spec.json (plain data), arrays.npz (numbers) and
estimator.skops (the fitted scikit-learn estimator, for lineage and retraining; never needed to score).

skops refuses unknown types; `TRUSTED_TYPES` lists exactly the ones our estimators are made of.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from leadscore.features.labels import QualifiedDefinition
from leadscore.model.boosted import CompiledTrees
from leadscore.model.calibration import Platt
from leadscore.model.encoding import Encoder
from leadscore.model.policy import HandoffPolicy
from leadscore.model.scorecard import Scorecard
from leadscore.model.scoring import ScoringModel

FORMAT = "leadscore-model/1"
TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.utils._bunch.Bunch",
    "sklearn.utils.validation.check_array",
    "sklearn.linear_model._logistic.LogisticRegression",
    "functools.partial",
    "builtins.slice",
)


def save(model: ScoringModel, path: Path, estimator=None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    spec = {
        "format": FORMAT, "family": model.family, "name": model.name,
        "encoder": model.encoder.to_dict(),
        "calibration": {"a": model.calibration.a, "b": model.calibration.b},
        "policy": model.policy.to_dict(), "definition": model.definition.to_dict(), "info": model.info,
    }
    (path / "spec.json").write_text(json.dumps(spec, indent=1, default=_json_default))
    np.savez(path / "arrays.npz", **model.explainer.to_arrays())
    if estimator is not None:
        import skops.io as sio

        sio.dump(estimator, path / "estimator.skops")
    return path


def load(path: Path) -> ScoringModel:
    path = Path(path)
    spec = json.loads((path / "spec.json").read_text())
    if spec.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} model (format {spec.get('format')!r})")
    encoder = Encoder.from_dict(spec["encoder"])
    with np.load(path / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    explainer = (Scorecard.from_arrays(arrays, len(encoder.features)) if spec["family"] == "scorecard"
                 else CompiledTrees.from_arrays(arrays))
    return ScoringModel(
        family=spec["family"], encoder=encoder, explainer=explainer, calibration=Platt(**spec["calibration"]),
        policy=HandoffPolicy.from_dict(spec["policy"]),
        definition=QualifiedDefinition.from_dict(spec["definition"]), info=spec["info"], name=spec["name"],
    )


def load_estimator(path: Path):
    """The fitted scikit-learn estimator, loaded by skops with exactly `TRUSTED_TYPES` trusted."""
    import skops.io as sio

    file = Path(path) / "estimator.skops"
    untrusted = set(sio.get_untrusted_types(file=file)) - set(TRUSTED_TYPES)
    if untrusted:
        raise ValueError(f"refusing to load {file}: untrusted types {sorted(untrusted)}")
    return sio.load(file, trusted=list(TRUSTED_TYPES))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")
