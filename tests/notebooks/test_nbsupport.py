"""The notebooks' shared plumbing: where data and the MLflow store are, the same way in every notebook."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def nbsupport():
    spec = importlib.util.spec_from_file_location("nbsupport", REPO / "notebooks" / "nbsupport.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("nbsupport", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_tracking_uri_defaults_to_the_projects_store(nbsupport, monkeypatch):
    # given no explicit store and no MLFLOW_TRACKING_URI, then the notebooks use <repo>/mlflow.db
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert nbsupport.tracking_uri("") == f"sqlite:///{REPO / 'mlflow.db'}"


def test_a_relative_sqlite_store_is_relative_to_the_repository_not_the_notebook(nbsupport, monkeypatch):
    # given the Makefile's relative MLFLOW_TRACKING_URI (make lab runs the kernel in notebooks/)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    # then it names the same file `make run` and the CLI use
    assert nbsupport.tracking_uri(None) == f"sqlite:///{REPO / 'mlflow.db'}"


def test_an_explicit_store_wins_and_absolute_or_remote_uris_are_kept(nbsupport, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert nbsupport.tracking_uri("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"
    assert nbsupport.tracking_uri("http://mlflow.internal:5000") == "http://mlflow.internal:5000"


def test_artifacts_go_next_to_the_sqlite_store(nbsupport, tmp_path, monkeypatch):
    # given a fresh SQLite store
    import mlflow

    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", previous)  # restored after the test, like the global below
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    try:
        # when a notebook points MLflow at it
        nbsupport.use_mlflow(uri)
        # then the experiment keeps its artifacts in mlruns/ beside the database, not in the working folder
        experiment = mlflow.get_experiment_by_name(nbsupport.EXPERIMENT)
        assert experiment.artifact_location == (tmp_path / "store" / "mlruns").as_uri()
    finally:
        mlflow.set_tracking_uri(previous)


def test_demo_data_is_generated_once_into_the_cache(nbsupport, tmp_path):
    # given an empty cache
    # when the demo data is asked for twice
    first = nbsupport.demo_data(tmp_path, leads=60, seed=1)
    stamp = (first / "leads.parquet").stat().st_mtime_ns
    second = nbsupport.data_dir("", tmp_path, 60, 1)
    # then it is generated once, in a folder named by size and seed
    assert first == second == tmp_path / "demo-60-seed1"
    assert (second / "leads.parquet").stat().st_mtime_ns == stamp


def test_a_missing_export_folder_is_named(nbsupport, tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-export"):
        nbsupport.data_dir(tmp_path / "no-such-export", tmp_path, 60, 1)
