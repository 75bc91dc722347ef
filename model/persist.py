"""Save and load a `ScoringModel` as a directory: spec.json (plain data), arrays.npz (numbers) and
estimator.skops (the fitted scikit-learn estimator, for lineage and retraining; never needed to score).

Loading a model runs no code from the files: spec.json is parsed as JSON and arrays.npz is read with
`allow_pickle=False`. `digest` is the SHA-256 of exactly those two files; the registry records it when a
version is registered and `load(..., expected_sha256=)` refuses a bundle that no longer matches.
skops refuses unknown types; `TRUSTED_TYPES` lists exactly the ones of our estimators it does not trust
itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from leadscore.features.labels import QualifiedDefinition
from leadscore.model.boosted import CompiledTrees
from leadscore.model.calibration import Platt
from leadscore.model.encoding import Encoder
from leadscore.model.policy import HandoffPolicy
from leadscore.model.scorecard import Scorecard
from leadscore.model.scoring import ScoringModel

FORMAT = "leadscore-model/1"
SCORING_FILES = ("spec.json", "arrays.npz")  # all that scoring reads; the hash covers exactly these
# the types of our estimators that skops does not trust by itself (its defaults cover the rest of
# scikit-learn's); tests/model/test_pyfunc.py checks that both families' files list exactly these
TRUSTED_TYPES = (
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)


def save(model: ScoringModel, path: Path, estimator: object = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    spec = {
        "format": FORMAT,
        "family": model.family,
        "name": model.name,
        "encoder": model.encoder.to_dict(),
        "calibration": {"a": model.calibration.a, "b": model.calibration.b},
        "policy": model.policy.to_dict(),
        "definition": model.definition.to_dict(),
        "info": model.info,
    }
    (path / "spec.json").write_text(json.dumps(spec, indent=1, default=_json_default))
    np.savez(path / "arrays.npz", allow_pickle=False, **model.explainer.to_arrays())
    if estimator is not None:
        import skops.io as sio

        sio.dump(estimator, path / "estimator.skops")
    return path


class BundleError(ValueError):
    """A model bundle that is missing, incomplete, or not the one that was registered."""


def digest(path: Path) -> str:
    """SHA-256 over the scoring files (name and content of each, in a fixed order)."""
    h = hashlib.sha256()
    for name in SCORING_FILES:
        data = (Path(path) / name).read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def load(path: Path, expected_sha256: str | None = None) -> ScoringModel:
    """The model in `path`; with `expected_sha256`, only if its scoring files hash to it."""
    path = Path(path)
    missing = [name for name in SCORING_FILES if not (path / name).is_file()]
    if missing:
        raise BundleError(f"model bundle {path} is incomplete: {', '.join(missing)} missing")
    if expected_sha256 is not None and (actual := digest(path)) != expected_sha256:
        raise BundleError(
            f"model bundle {path} does not match the SHA-256 recorded at registration "
            f"({actual[:12]}... != {expected_sha256[:12]}...): its files were changed"
        )
    spec = json.loads((path / "spec.json").read_text())
    if spec.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} model (format {spec.get('format')!r})")
    encoder = Encoder.from_dict(spec["encoder"])
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    explainer = (
        Scorecard.from_arrays(arrays, len(encoder.features))
        if spec["family"] == "scorecard"
        else CompiledTrees.from_arrays(arrays, len(encoder.features))
    )
    return ScoringModel(
        family=spec["family"],
        encoder=encoder,
        explainer=explainer,
        calibration=Platt(**spec["calibration"]),
        policy=HandoffPolicy.from_dict(spec["policy"]),
        definition=QualifiedDefinition.from_dict(spec["definition"]),
        info=spec["info"],
        name=spec["name"],
    )


def load_estimator(path: Path) -> Any:
    """The fitted scikit-learn estimator, loaded by skops with exactly `TRUSTED_TYPES` trusted."""
    import skops.io as sio

    file = Path(path) / "estimator.skops"
    untrusted = set(sio.get_untrusted_types(file=file)) - set(TRUSTED_TYPES)
    if untrusted:
        raise ValueError(f"refusing to load {file}: untrusted types {sorted(untrusted)}")
    return sio.load(file, trusted=list(TRUSTED_TYPES))


def _json_default(o: object) -> object:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")
