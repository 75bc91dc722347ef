"""The notebooks run end to end, in order, on a small demo dataset and a temporary MLflow store; and the
committed notebooks carry no outputs.

Each notebook is executed by a real Jupyter kernel (ipykernel on this interpreter, the project's venv) with
nbclient; a cell that raises fails its test. Parameters reach the notebooks' parameters cell through
environment variables (LEADSCORE_NB_*), so nothing is written into the repository.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ORDER = (
    "01-explore.ipynb",
    "02-train-and-compare.ipynb",
    "03-explain-and-handoff.ipynb",
    "04-retrain-from-feedback.ipynb",
)
LEADS = 2000  # small: the four notebooks take about two minutes together on 2 cores
SEED = 3
CELL_TIMEOUT = 600


def load_strip():
    spec = importlib.util.spec_from_file_location("nb_strip", NOTEBOOKS / "strip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec named like the project's ("leadscore") that runs this interpreter, and the environment
    that points the notebooks at temporary data, MLflow store and working folder."""
    pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[test]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[test]')")
    from jupyter_client.kernelspec import KernelSpecManager

    root = tmp_path_factory.mktemp("notebooks")
    spec_dir = root / "kernels" / "leadscore"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python (leadscore, tests)",
                "language": "python",
            }
        )
    )
    ksm = KernelSpecManager(kernel_dirs=[str(root / "kernels")])
    env = {
        **os.environ,
        "LEADSCORE_NB_LEADS": str(LEADS),
        "LEADSCORE_NB_SEED": str(SEED),
        "LEADSCORE_NB_DATA": str(root / "data"),
        "LEADSCORE_NB_MLFLOW": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
        "LEADSCORE_NB_EXPORT": "",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join(p for p in (str(NOTEBOOKS), os.environ.get("PYTHONPATH")) if p),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    (root / "mlflow").mkdir()
    work = root / "work"
    work.mkdir()
    kernel_starts(ksm, env, work)
    return {"ksm": ksm, "env": env, "cwd": work, "root": root}


def kernel_starts(ksm, env: dict, cwd: Path) -> None:
    """Skip (visibly) when no kernel can start here; a kernel dying later fails the notebook's test."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="leadscore", kernel_spec_manager=ksm)
    try:
        km.start_kernel(env=env, cwd=str(cwd))
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        kc.stop_channels()
    except Exception as e:  # noqa: BLE001 - any reason the kernel cannot start
        pytest.skip(f"a Jupyter kernel cannot start on this machine: {type(e).__name__}: {e}")
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)


def execute(path: Path, kernel_env: dict) -> nbformat.NotebookNode:
    """Run every cell of the notebook at `path` in a fresh kernel; raise if a cell raises."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="leadscore", kernel_spec_manager=kernel_env["ksm"])
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(kernel_env["cwd"])}},
    )
    client.execute(env=kernel_env["env"])
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def images_in(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def test_the_four_notebooks_are_there_in_order():
    # given the notebooks folder, then it holds the four numbered notebooks a data scientist runs in order
    assert sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")) == list(ORDER)


@pytest.mark.parametrize("name", ORDER)
def test_committed_notebooks_have_no_outputs(name):
    # given a committed notebook, then it has no outputs or execution counts
    # (strip them with: python notebooks/strip.py)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert load_strip().dirty_cells(nb) == [], f"{name} has outputs: run `python notebooks/strip.py`"


@pytest.mark.parametrize("name", ORDER)
def test_every_notebook_has_a_parameters_cell_read_from_the_environment(name):
    # given a notebook, then its first code cell is tagged "parameters" and reads the LEADSCORE_NB_* variables
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    for var in ("LEADSCORE_NB_LEADS", "LEADSCORE_NB_SEED", "LEADSCORE_NB_DATA", "LEADSCORE_NB_MLFLOW"):
        assert var in first.source


def test_strip_clears_outputs_and_check_mode_reports_them(tmp_path):
    # given a notebook with an output and an execution count
    strip = load_strip()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[0].execution_count = 1
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    # when checked, then it is reported and the file is unchanged
    assert strip.main(["--check", str(path)]) == 1
    assert nbformat.read(path, as_version=4).cells[0].outputs
    # when stripped, then outputs and counts are gone and a check passes
    assert strip.main([str(path)]) == 0
    cell = nbformat.read(path, as_version=4).cells[0]
    assert cell.outputs == [] and cell.execution_count is None
    assert strip.main(["--check", str(path)]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ORDER)
def test_notebook_runs_end_to_end(name, kernel_env):
    # given the notebooks run in order on one temporary store (02 registers the champion 03 and 04 use)
    # when this notebook is executed top to bottom
    nb = execute(NOTEBOOKS / name, kernel_env)
    # then no cell raised, and it showed its plots and findings
    out = text_of(nb)
    assert images_in(nb) >= 1, f"{name} showed no plot"
    if name.startswith("01"):
        assert "lead_quality" in out
    if name.startswith("02"):
        assert "mlflow ui --backend-store-uri sqlite:///" in out
    if name.startswith("04"):
        assert "posted" in out and "the service now serves version" in out
