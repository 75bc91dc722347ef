"""Benchmark: what a fresh Python worker pays before its first score (issue 14, point 8).

Each step runs in a fresh child process (the interpreter given, `--python`: point it at another checkout's
venv to measure that code), `--runs` times; the median wall and CPU (user + system of the child) are
reported for each step:
- `import`: `import leadscore.model.pyfunc` (what MLflow's loader, `spark_udf` and `mlflow models serve`
  import first);
- `load_model`: `mlflow.pyfunc.load_model(<model folder>)` after that import (spark_udf's workers load a
  local copy, so no registry is involved);
- `first predict`: the first `predict` of 50 leads (the feature and reason kernels are loaded then);
- `spark task`: what `leadscore.spark.score`'s Python worker runs for its first partition: import
  `leadscore.spark` and the batch path, load the shipped bundle with `persist.load` (SHA-256 checked).

Conditions: `warm` = bytecode and numba's kernels cached (every later worker on a machine); `cold bytecode`
= every module compiled from source (an environment installed without compiled bytecode on a read-only
disk, or `PYTHONDONTWRITEBYTECODE=1`); `cold kernels` = numba compiles every kernel (the first worker of a
fresh environment, e.g. one MLflow just built with env_manager="uv"). Bytecode goes to a folder of the
benchmark's own (`PYTHONPYCACHEPREFIX`), so two checkouts are measured alike.

Run: `python bench/startup.py --model MODEL_URI --data DATA_DIR [--python PY] [--runs 5]`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

CHILD = r"""
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
step, model, frame, bundle = sys.argv[1:5]
out = {}
t, c = time.perf_counter(), cpu()
if step == "spark task":
    import leadscore.spark  # noqa: F401
    from leadscore.features.loading import dataset_from_frames  # noqa: F401
    from leadscore.model.batch import dataset_chunks, score_chunk  # noqa: F401
    from leadscore.model import persist
    persist.load(bundle, expected_sha256=persist.digest(bundle))
    out["spark task"] = (time.perf_counter() - t, cpu() - c)
else:
    import leadscore.model.pyfunc  # noqa: F401
    out["import"] = (time.perf_counter() - t, cpu() - c)
    t, c = time.perf_counter(), cpu()
    import mlflow.pyfunc
    loaded = mlflow.pyfunc.load_model(model)
    out["load_model"] = (time.perf_counter() - t, cpu() - c)
    import pandas as pd
    rows = pd.read_pickle(frame)
    t, c = time.perf_counter(), cpu()
    loaded.predict(rows)
    out["first predict"] = (time.perf_counter() - t, cpu() - c)
print(json.dumps(out))
"""
STEPS = ("import", "load_model", "first predict", "spark task")
CONDITIONS = ("warm", "cold bytecode", "cold kernels")


def run(python: str, step: str, paths: dict[str, Path], condition: str, work: Path) -> dict[str, list[float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pyc")
    env["NUMBA_CACHE_DIR"] = str(work / "numba")
    if condition == "cold bytecode":  # an empty prefix each time, nothing written
        fresh = Path(tempfile.mkdtemp(dir=work))
        env["PYTHONPYCACHEPREFIX"], env["PYTHONDONTWRITEBYTECODE"] = str(fresh), "1"
    if condition == "cold kernels":
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(dir=work)
    args = [str(paths[k]) for k in ("model", "frame", "bundle")]
    done = subprocess.run(
        [python, "-c", CHILD, step, *args], env=env, capture_output=True, text=True, cwd=work, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{step}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a model URI (downloaded once to a local folder)")
    ap.add_argument("--data", type=Path, required=True, help="a demo dataset folder (50 leads are scored)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    import mlflow
    from leadscore.features.loading import load_dataset
    from leadscore.model.pyfunc import BUNDLE, pyfunc_input

    work = Path(tempfile.mkdtemp(prefix="leadscore-startup-"))
    model = Path(mlflow.artifacts.download_artifacts(opts.model, dst_path=str(work / "model")))
    data = load_dataset(opts.data)
    frame = work / "frame.pkl"
    pyfunc_input(data, data.snapshot_at).head(50).to_pickle(frame)
    paths = {"model": model, "frame": frame, "bundle": model / "artifacts" / BUNDLE}
    print(_util.machine(), f"load average {os.getloadavg()[0]:.1f}", f"python {opts.python}", flush=True)
    for step in ("pyfunc", "spark task"):  # warm-up: bytecode and kernels cached for `warm`
        run(opts.python, step, paths, "warm", work)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(opts.runs):  # conditions interleaved: a change of the machine's load hits them alike
        for condition in CONDITIONS:
            for step in ("pyfunc", "spark task"):
                for name, value in run(opts.python, step, paths, condition, work).items():
                    times.setdefault((condition, name), []).append(tuple(value))
    print(f"\nmedian of {opts.runs} fresh processes; load average now {os.getloadavg()[0]:.1f}\n")
    print("| step | " + " | ".join(f"{c}: wall / CPU" for c in CONDITIONS) + " |")
    print("| --- |" + " --- |" * len(CONDITIONS))
    for step in STEPS:
        cells = []
        for condition in CONDITIONS:
            v = times[(condition, step)]
            wall, cpu = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
            cells.append(f"{wall:.2f} s / {cpu:.2f} s")
        print(f"| {step} | " + " | ".join(cells) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
