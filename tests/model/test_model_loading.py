"""Loading a registered model runs no code from it (issue 13.1): the service's loader reads only the data
bundle (JSON and a pickle-free .npz) and checks it against the SHA-256 recorded at registration; the pyfunc
is logged as models-from-code, so a version holds no pickle, and still loads with
`mlflow.pyfunc.load_model`."""

from __future__ import annotations

import contextlib
import pathlib
import tempfile
from pathlib import Path

import mlflow
import pytest
from leadscore.model import persist, pyfunc, registry, tracking
from leadscore.serve.model_holder import ModelHolder
from mlflow import MlflowClient


class CodeOnUnpickle(mlflow.pyfunc.PythonModel):
    """A python_model.pkl that writes `marker` when it is unpickled: what anyone able to register a version
    could plant."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (pathlib.Path(self.marker), "code ran at unpickling")

    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("loading")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    # artifacts in the test's folder (MLflow's default is ./mlruns of the working directory)
    mlflow.create_experiment(tracking.EXPERIMENT, artifact_location=(root / "mlruns").as_uri())
    mlflow.set_experiment(tracking.EXPERIMENT)
    yield uri
    mlflow.set_tracking_uri(previous)


def _version_dir(name: str, version: str) -> Path:
    """The local artifact folder of a registered version (the test's SQLite store keeps artifacts on disk)."""
    uri = MlflowClient().get_model_version_download_uri(name, version)
    return Path(uri.removeprefix("file://"))


def test_a_pickle_in_a_version_never_runs_when_the_service_loads_it(own_registry, trained, tmp_path):
    # given a version laid out the old way (python_model.pkl + bundle artifact) whose pickle runs code
    marker = tmp_path / "pwned"
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run():
        bundle = persist.save(trained.result.model, Path(tmp) / "bundle")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=CodeOnUnpickle(marker),
            artifacts={"bundle": str(bundle)},
            pip_requirements=[],
        )
    version = str(mlflow.register_model(info.model_uri, "evil").version)
    registry.promote(version, name="evil", reason="test")
    assert (_version_dir("evil", version) / "python_model.pkl").exists()
    # when the service's loader loads it (directly, and through the holder's reload with its smoke test)
    model = registry.load_scoring_model("models:/evil@champion")
    outcome = ModelHolder("models:/evil@champion").reload()
    # then it serves the bundle's model and no code of the pickle ran
    assert model.version == version and model.family == trained.result.model.family
    assert outcome.changed and not outcome.refused, outcome.message
    assert not marker.exists()
    # (and the pickle is live: MLflow's generic loader does run it, which the service must never use)
    # the planted object is no working model; only its side effect matters
    with contextlib.suppress(Exception):
        mlflow.pyfunc.load_model(f"models:/evil/{version}")
    assert marker.exists()


def test_tracked_version_has_no_pickle_records_its_hash_and_loads_for_users(
    own_registry, trained, demo_dataset
):
    # given a version logged by `track` (models-from-code)
    tracked = tracking.track(
        trained.result,
        demo_dataset,
        trained.config,
        holdout_values=trained.result.holdout_values,
        model_name="clean",
    )
    folder = _version_dir("clean", tracked.version)
    # then no pickle is in it, and its bundle's SHA-256 is recorded in the registry and in MLmodel
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    tag = MlflowClient().get_model_version("clean", tracked.version).tags[pyfunc.BUNDLE_SHA256]
    assert tag == persist.digest(folder / "artifacts" / "bundle")
    assert mlflow.models.Model.load(str(folder)).metadata[pyfunc.BUNDLE_SHA256] == tag
    # and users still load it with MLflow's pyfunc loader, getting the same scores as the service's loader
    example = pyfunc.example_frame(trained.result.model.info["example"])
    out = mlflow.pyfunc.load_model(f"models:/clean/{tracked.version}").predict(example)
    native = registry.load_scoring_model(f"models:/clean/{tracked.version}")
    assert out["probability"].iloc[0] == pytest.approx(
        native.results(*_values_and_ids(native))[0]["probability"]
    )


def _values_and_ids(model):
    from leadscore.features.live import lead_features, to_ms

    lead = model.info["example"]["leads"][0]
    return lead_features([lead], [to_ms(lead["as_of"])]), [lead["lead_id"]]


def test_a_tampered_or_incomplete_bundle_is_refused_with_the_reason(own_registry, trained, demo_dataset):
    import numpy as np

    # given a registered champion whose bundle is then changed in the artifact store
    tracked = tracking.track(
        trained.result,
        demo_dataset,
        trained.config,
        holdout_values=trained.result.holdout_values,
        model_name="damaged",
    )
    assert registry.alias_version(registry.CHAMPION, "damaged") == tracked.version
    arrays = _version_dir("damaged", tracked.version) / "artifacts" / "bundle" / "arrays.npz"
    original = arrays.read_bytes()
    with np.load(arrays) as z:
        data = {k: z[k] for k in z.files}
    first = sorted(data)[0]
    data[first] = data[first] + 1  # a valid file with different numbers: only the hash can tell
    np.savez(arrays, **data)
    for reason in ("does not match the SHA-256 recorded at registration", "incomplete: arrays.npz missing"):
        # when the service's loader loads it, it is refused, and the holder says why
        with pytest.raises(persist.BundleError, match=reason):
            registry.load_scoring_model("models:/damaged@champion")
        outcome = ModelHolder("models:/damaged@champion").reload()
        assert outcome.refused and reason in outcome.message
        if arrays.exists():
            arrays.unlink()  # next: the file is gone
    # and a version whose bundle is gone altogether is refused too
    bundle = arrays.parent
    bundle.rename(bundle.with_name("moved"))
    with pytest.raises(persist.BundleError, match="its model bundle .* cannot be read"):
        registry.load_scoring_model("models:/damaged@champion")
    bundle.with_name("moved").rename(bundle)
    # and the intact bundle loads again
    arrays.write_bytes(original)
    assert registry.load_scoring_model("models:/damaged@champion").version == tracked.version


def test_a_version_without_a_bundle_is_refused(own_registry, tmp_path):
    # given a pyfunc version that is not a Leadscore model (no bundle artifact)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=str(pyfunc.CODE_PATH), pip_requirements=[])
    version = str(mlflow.register_model(info.model_uri, "not-leadscore").version)
    with pytest.raises(persist.BundleError, match="lists no 'bundle' artifact"):
        registry.load_scoring_model(f"models:/not-leadscore/{version}")


def test_old_versions_without_a_recorded_hash_still_load(own_registry, trained):
    # given a version logged before hashes were recorded (old layout: pickle + bundle, no tag, no metadata)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run():
        bundle = persist.save(trained.result.model, Path(tmp) / "bundle")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=pyfunc.LeadscorePyfunc(),
            artifacts={"bundle": str(bundle)},
            pip_requirements=[],
        )
    version = str(mlflow.register_model(info.model_uri, "old").version)
    # then the service's loader reads its bundle
    model = registry.load_scoring_model(f"models:/old/{version}")
    assert model.encoder.features == trained.result.model.encoder.features
