"""Benchmark: the in-process call POST /v1/score makes, for 1 lead and for 1,000 leads.

Times `serve.scoring.score_request` (features, model, reasons, insight, handoff, score-log rows encoded as
the background writer encodes them) on a parsed request, as the route calls it, with no database and no
HTTP. The model (scorecard and boosted) is trained once on 4,000 demo leads (seed 7) and cached.
Run: `python bench/score_call.py [--family scorecard|boosted]` (median of many runs, in milliseconds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_ms  # noqa: E402

CACHE = Path("/tmp/leadscore-bench/score-call")


def ensure_model(family: str) -> Path:
    path = CACHE / f"model-{family}"
    if (path / "spec.json").exists():
        return path
    from leadscore.features.loading import load_dataset
    from leadscore.model import persist
    from leadscore.model.train import TrainConfig, train

    from leadscore.demo.generate import generate

    data = CACHE / "data"
    if not (data / "dataset.json").exists():
        generate(data, 4000, seed=7)
    from leadscore.model.run_metadata import example_body

    dataset = load_dataset(data)
    result = train(dataset, TrainConfig(model=family))
    result.model.info["example"] = example_body(dataset, result.rows)
    persist.save(result.model, path)
    return path


def main() -> None:
    family = sys.argv[sys.argv.index("--family") + 1] if "--family" in sys.argv else "scorecard"
    from leadscore.model import persist
    from leadscore.model.exploration import NONE
    from leadscore.serve import store
    from leadscore.serve.routes.score import parse_score_request
    from leadscore.serve.scoring import score_request

    model = persist.load(ensure_model(family))
    example = model.info["example"]["leads"]

    class Rows:  # the score-log writer's encoding, without the database
        def put(self, rows):
            [store.score_log_row(r) for r in rows]

    state = SimpleNamespace(metrics=None, score_log=Rows(), settings=None, engine=None, exploration=NONE)
    for n, runs in ((1, 5000), (1000, 41)):
        leads = [dict(example[i % len(example)], lead_id=f"L{i}") for i in range(n)]
        req = parse_score_request("application/json", json.dumps({"leads": leads}).encode())
        ms = median_ms(lambda r=req: score_request(state, r, False, {}, model), runs, warmup=3)
        print(f"{family}: score_request, {n:>5} lead(s): {ms:.3f} ms (median of {runs})")


if __name__ == "__main__":
    main()
