"""Benchmark: training on 1M rows, both model families as `leadscore train --model auto` does.

Builds the training table of the benchmark data once (cached as Parquet next to it), takes the first 1M
training rows by as_of (holdout = the most recent 20 % of them, as in training), then times, in a child
process, `fit_models` with model="auto": encoder, scorecard, boosted trees, calibration, the comparison,
the policy and the evaluation. Goal on a 2-core machine: <= 3 minutes.
Run: `python bench/train.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

GOAL_S = 180
N_ROWS = int(1e6)


def table_path() -> Path:
    return _util.bench_dir().with_name(_util.bench_dir().name + "-training-table.parquet")


def ensure_table(data: Path) -> Path:
    path = table_path()
    if path.exists():
        return path
    from leadscore.features.frames import feature_frame
    from leadscore.features.labels import QualifiedDefinition, training_rows
    from leadscore.features.loading import load_dataset

    print("building the training table once ...", flush=True)
    dataset = load_dataset(data)
    rows = training_rows(dataset, QualifiedDefinition()).head(N_ROWS)
    table = feature_frame(dataset, rows)
    table.insert(0, "label", rows["label"].to_numpy())
    table.insert(0, "as_of", rows["as_of"].to_numpy())
    table.insert(0, "lead_id", rows["lead_id"].to_numpy())
    table.to_parquet(path, index=False)
    return path


def child(path: str) -> None:
    s = _util.Stages()
    import pandas as pd
    from leadscore.features import catalog
    from leadscore.model.train import TrainConfig, fit_models
    from leadscore.model.training_data import split_by_lead_time

    table = pd.read_parquet(path)
    config = TrainConfig(model="auto")
    rows = table[["lead_id", "as_of", "label"]]
    values = {name: table[name].to_numpy() for name in config.features}
    holdout = split_by_lead_time(rows, config.holdout_fraction)
    s.done("read table")
    current = ["encoder + split"]

    def step(msg: str) -> None:  # a message starts a stage: the time so far belongs to the previous one
        s.done(current[0])
        current[0] = msg[:48]

    result = fit_models(values, rows, holdout, catalog.CATEGORICAL, config, step=step)
    s.done(current[0] + " + policy + evaluation")
    train_s = round(s.total() - s.times["read table"], 2)
    print(
        json.dumps(
            {
                "stages": s.times,
                "train_s": train_s,
                "n": len(rows),
                "chosen": result.model.family,
                "auc": {k: round(v["roc_auc"], 4) for k, v in result.candidates.items() if "roc_auc" in v},
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    data = _util.ensure_dataset()
    path = ensure_table(data)
    print(f"machine: {_util.machine()}")
    r, wall, peak_gb = _util.run_child(__file__, str(path))
    for k, v in r["stages"].items():
        print(f"  {k:<50} {v:7.1f} s")
    print(
        f"train --model auto on {r['n']:,} rows: {r['train_s']:.1f} s (goal {GOAL_S} s -> "
        f"{'meets' if r['train_s'] <= GOAL_S else 'MISSES'}); chose {r['chosen']}; "
        f"holdout ROC AUC {r['auc']}; "
        f"peak RSS {peak_gb:.2f} GiB; process wall {wall:.1f} s"
    )


if __name__ == "__main__":
    main()
