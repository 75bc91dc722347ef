"""The logged model carries its own environment: MLflow rebuilds it with `env_manager="uv"` from the model's
requirements (the leadscore wheel inside the model, its dependencies pinned) and the model scores there as it
does here. Needs uv (installed into the project's venv by `make`) and the package index or uv's cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import Distribution
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from leadscore.model import environment

UV = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
needs_uv = pytest.mark.skipif(UV is None, reason="uv is not installed: MLflow's env_manager='uv' needs it")


@needs_uv
def test_registered_model_rebuilds_its_environment_with_uv_and_scores_the_same(
    trained, demo_dataset, tmp_path, monkeypatch
):
    from leadscore.model.pyfunc import pyfunc_input

    # given the session's registered champion, downloaded as a deployment gets it
    mlflow.set_tracking_uri(trained.uri)
    local = Path(mlflow.artifacts.download_artifacts("models:/leadscore@champion", dst_path=str(tmp_path)))
    # whose requirements name the leadscore wheel it carries (a path inside the model), then pinned versions
    requirements = (local / "requirements.txt").read_text().split()
    wheel = local / requirements[0]
    assert requirements[0].startswith("code/") and wheel.is_file()
    assert zipfile.ZipFile(wheel).getinfo("leadscore/model/pyfunc.py").file_size > 0
    assert {r.split("==")[0] for r in requirements[1:]} >= {"numpy", "pandas", "scikit-learn", "mlflow"}
    assert all("==" in r for r in requirements[1:])
    # when MLflow builds the model's environment with uv (`predict` builds it in a new folder each time:
    # nothing is reused) and predicts there, away from this checkout
    frame = pyfunc_input(demo_dataset, demo_dataset.snapshot_at).head(40)
    monkeypatch.setenv("PATH", f"{Path(UV).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "predictions.json"
    mlflow.models.predict(str(local), input_data=frame, env_manager="uv", output_path=str(out))
    rebuilt = pd.DataFrame(json.loads(out.read_text())["predictions"])
    # then it scores every lead exactly as the model loaded here does
    here = mlflow.pyfunc.load_model(str(local)).predict(frame)
    assert len(rebuilt) == len(frame) == 40
    assert rebuilt["lead_id"].tolist() == here["lead_id"].tolist()
    assert rebuilt["probability"].tolist() == here["probability"].tolist()
    assert rebuilt["grade"].tolist() == here["grade"].tolist()
    assert rebuilt["qualified"].tolist() == here["qualified"].tolist()
    assert rebuilt["reasons"].tolist() == here["reasons"].tolist()


@needs_uv
def test_an_installed_wheel_is_packed_back_into_the_same_wheel(tmp_path):
    # given the package's wheel, installed (not editable) into a fresh venv as a user's pip would
    built = environment.package_wheel(cache=tmp_path / "cache")
    venv = tmp_path / "venv"
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [UV, "pip", "install", "--quiet", "--no-deps", "--python", str(venv / "bin/python"), str(built)],
        check=True,
    )
    info = next((venv / "lib").glob("python3*/site-packages/leadscore-*.dist-info"))
    # when it is packed again from the installed files (there is no source tree to build from)
    packed = environment.pack_installed(Distribution.at(info), tmp_path)
    # then it is the same wheel: the same name and the same files with the same bytes (RECORD made anew)
    assert packed.name == built.name
    with zipfile.ZipFile(built) as a, zipfile.ZipFile(packed) as b:
        same = {n for n in a.namelist() if not n.endswith("/RECORD")}
        assert {n for n in b.namelist() if not n.endswith("/RECORD")} == same
        assert all(a.read(n) == b.read(n) for n in same)
    # and an installation changed by hand is refused, not packed into a wheel that is not the release
    pyfunc = next((venv / "lib").glob("python3*/site-packages/leadscore/model/pyfunc.py"))
    pyfunc.write_text(pyfunc.read_text() + "\n# changed\n")
    (tmp_path / "again").mkdir()
    with pytest.raises(environment.WheelError, match="does not match its RECORD"):
        environment.pack_installed(Distribution.at(info), tmp_path / "again")


def test_a_scoring_process_imports_neither_sklearn_nor_scipy_optimize(tmp_path):
    # given a fresh process, as a Spark or pyfunc worker starts
    code = (
        "import sys, leadscore.model.pyfunc, leadscore.spark\n"
        "from leadscore.model.batch import score_chunk\n"
        "print(sorted(m for m in ('sklearn', 'scipy.optimize', 'skops') if m in sys.modules))"
    )
    # when it imports what loading a model and scoring need
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    # then the fitting libraries stay unimported: importing them cost each worker 1.7 s (docs/benchmarks.md)
    assert done.stdout.split("\n")[0] == "[]"


def _installed_dist(site: Path, files: dict[str, bytes]) -> Distribution:
    """A dist-info in `site` whose RECORD lists `files` (as RECORD names them) with their true hashes."""
    info = site / "leadscore-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nTag: py3-none-any\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leadscore\nVersion: 1.0\n")
    files = {**files, **{f"{info.name}/{n}": (info / n).read_bytes() for n in ("WHEEL", "METADATA")}}
    record = [f"{p},sha256={environment._record_hash(data)},{len(data)}" for p, data in files.items()]
    (info / "RECORD").write_text("\n".join([*record, "leadscore-1.0.dist-info/RECORD,,"]) + "\n")
    return Distribution.at(info)


def test_packing_never_puts_a_file_from_outside_site_packages_into_the_wheel(tmp_path):
    # given a RECORD (the installer's, or a tampered one) that names files outside site-packages, each with
    # its true hash: an absolute path, and a path that climbs out through the package folder
    site, secret = tmp_path / "site-packages", tmp_path / "secret.txt"
    secret.write_bytes(b"not the package's")
    (site / "leadscore").mkdir(parents=True)
    (site / "leadscore/__init__.py").write_bytes(b"")
    files = {"leadscore/__init__.py": b"", str(secret): secret.read_bytes()}
    out = tmp_path / "out"
    out.mkdir()
    # when the installation is packed, the absolute path (outside site-packages, like ../bin scripts) is
    # left out: the wheel holds only the package's own files, under relative names
    with zipfile.ZipFile(environment.pack_installed(_installed_dist(site, files), out)) as z:
        assert sorted(z.namelist()) == [
            "leadscore-1.0.dist-info/METADATA",
            "leadscore-1.0.dist-info/RECORD",
            "leadscore-1.0.dist-info/WHEEL",
            "leadscore/__init__.py",
        ]
    # and a path that climbs out from inside the package is refused, not packed under a name with '..'
    climbing = tmp_path / "climbing"
    (climbing / "leadscore").mkdir(parents=True)
    files = {"leadscore/../../secret.txt": secret.read_bytes()}
    with pytest.raises(environment.WheelError, match=r"leadscore/\.\./\.\./secret\.txt"):
        environment.pack_installed(_installed_dist(climbing, files), out)
