"""Benchmark: 1M leads with ~30M events (demo generator) into the training table.

Measures, in a child process, `load_dataset` + `training_rows` + `feature_frame`: wall time per stage and
the peak resident memory of the process. Goal on a 2-core, 24 GiB machine: <= 60 s and <= 8 GB (stretch:
30 s). Run: `python bench/features.py` (LEADSCORE_BENCH_DIR moves the cached data, default
/tmp/leadscore-bench/1m; LEADSCORE_BENCH_LEADS changes the size).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

GOAL_S, STRETCH_S, GOAL_GB = 60, 30, 8


def child(data: str) -> None:
    s = _util.Stages()
    from leadscore.features.frames import feature_frame
    from leadscore.features.labels import QualifiedDefinition, training_rows
    from leadscore.features.loading import load_dataset

    s.done("import")
    dataset = load_dataset(data)
    s.done("load_dataset")
    rows = training_rows(dataset, QualifiedDefinition())
    s.done("training_rows")
    table = feature_frame(dataset, rows)
    s.done("feature_frame")
    measured = round(sum(v for k, v in s.times.items() if k != "import"), 2)
    print(
        json.dumps(
            {
                "stages": s.times,
                "measured_s": measured,
                "n_leads": len(dataset.leads),
                "n_events": len(dataset.events),
                "n_rows": len(rows),
                "n_features": table.shape[1],
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    data = _util.ensure_dataset()
    print(f"machine: {_util.machine()}")
    r, wall, peak_gb = _util.run_child(__file__, str(data))
    print(
        f"features: {r['n_leads']:,} leads, {r['n_events']:,} events -> {r['n_rows']:,} training rows x "
        f"{r['n_features']} features"
    )
    for k, v in r["stages"].items():
        print(f"  {k:<15} {v:7.1f} s")
    ok = "meets" if r["measured_s"] <= GOAL_S and peak_gb * 2**30 / 1e9 <= GOAL_GB else "MISSES"
    print(
        f"load + rows + features: {r['measured_s']:.1f} s (goal {GOAL_S} s, stretch {STRETCH_S} s); "
        f"peak RSS {peak_gb:.2f} GiB = {peak_gb * 2**30 / 1e9:.2f} GB (goal {GOAL_GB} GB); "
        f"process wall {wall:.1f} s -> {ok} the goal"
    )


if __name__ == "__main__":
    main()
