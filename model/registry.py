"""The MLflow model registry: versions of `leadscore`, the `champion` the service serves, the
`challenger` a new version starts as, loading a version's model, promotion and rollback. The gate that
decides between challenger and champion is in `gate.py`.

Each promotion records the champion it replaced, so `rollback` can restore it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
from leadscore.model import persist, pyfunc
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
