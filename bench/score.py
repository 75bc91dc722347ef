"""Benchmark: `leadscore score` on 1M leads with their top 5 positive and negative reasons.

Trains a model once on a 20k-lead sample of the benchmark data (cached next to it, not registered), then
times, in a child process: load_dataset, then batch scoring of every lead (features + scores + reasons +
writing Parquet). Goal on a 2-core machine: 1M leads scored with top reasons in <= 20 s (the goal is read
as the scoring step, features included; loading the raw CSV-like export is reported separately).
Run: `python bench/score.py [--family scorecard|boosted]`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

GOAL_S = 20
TRAIN_LEADS = 20_000


def model_dir(family: str) -> Path:
    return _util.bench_dir().with_name(_util.bench_dir().name + f"-model-{family}")


def ensure_model(family: str) -> Path:
    path = model_dir(family)
    if (path / "spec.json").exists():
        return path
    from leadscore.features.loading import load_dataset
    from leadscore.model import persist
    from leadscore.model.train import TrainConfig, train

    from leadscore.demo.generate import generate

    sample = path.with_name(path.name + "-data")
    if not (sample / "dataset.json").exists():
        generate(sample, TRAIN_LEADS, seed=1)
    result = train(load_dataset(sample), TrainConfig(model=family))
    persist.save(result.model, path)
    return path


def child(data: str, model_path: str, out: str) -> None:
    s = _util.Stages()
    from leadscore.features.loading import load_dataset
    from leadscore.model import persist
    from leadscore.model.batch import score_dataset

    model = persist.load(Path(model_path))
    s.done("import + load model")
    dataset = load_dataset(data)
    s.done("load_dataset")
    summary = score_dataset(dataset, model, Path(out))
    s.done("score_dataset")
    print(
        json.dumps(
            {
                "stages": s.times,
                "n": summary.n_rows,
                "family": model.family,
                "out_mb": round(Path(out).stat().st_size / 1e6, 1),
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:5])
    family = sys.argv[sys.argv.index("--family") + 1] if "--family" in sys.argv else "boosted"
    data = _util.ensure_dataset()
    model_path = ensure_model(family)
    print(f"machine: {_util.machine()}")
    out = _util.bench_dir().with_name("scores.parquet")
    r, wall, peak_gb = _util.run_child(__file__, str(data), str(model_path), str(out))
    for k, v in r["stages"].items():
        print(f"  {k:<22} {v:7.1f} s")
    sc = r["stages"]["score_dataset"]
    print(
        f"score ({r['family']}): {r['n']:,} leads with top 5 + 5 reasons in {sc:.1f} s "
        f"({r['n'] / sc:,.0f} leads/s; goal {GOAL_S} s -> {'meets' if sc <= GOAL_S else 'MISSES'}); "
        f"output {r['out_mb']} MB; peak RSS {peak_gb:.2f} GiB; process wall {wall:.1f} s"
    )


if __name__ == "__main__":
    main()
