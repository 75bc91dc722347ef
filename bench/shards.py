"""Benchmark: peak memory of single-machine `leadscore features` with and without lead-hash shards.

Runs the real command (`leadscore features --data D --as-of ... --shards N`) as a child process per
dataset and shard setting, and prints wall time, CPU time and the child's peak resident memory (ru_maxrss,
what `/usr/bin/time -v` reports as "Maximum resident set size"). Goal: with automatic shards the peak
stays <= 8 GB whatever the number of events (docs/scale.md, "One machine, bigger than memory").

Run: `python bench/shards.py [DATA_DIR ...] [--shards 1,auto]` (default: the cached 1M-lead demo dataset;
make others with `leadscore demo-data --leads 5000000 --out DIR`). "auto" lets the command pick the
number of shards from the data and its default memory budget.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

AS_OF = "2026-07-01T00:00:00Z"
GOAL_GB = 8


def run(data: Path, shards: str, out_dir: Path) -> dict:
    """One `leadscore features` run: wall s, CPU s, peak RSS (GB), shards used, leads, events."""
    out = out_dir / f"features-{shards}.parquet"
    cmd = [
        sys.executable,
        "-m",
        "leadscore",
        "features",
        "--data",
        str(data),
        "--as-of",
        AS_OF,
        "--out",
        str(out),
    ]
    cmd += [] if shards == "auto" else ["--shards", shards]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS and CPU time
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    said = " ".join(err.split())
    used = said.split("(")[-1].split(" shards)")[0] if " shards)" in said else "1"
    meta = json.loads((data / "dataset.json").read_text()) if (data / "dataset.json").exists() else {}
    out.unlink(missing_ok=True)
    return {
        "leads": meta.get("n_leads"),
        "events": meta.get("n_events"),
        "shards": f"{used} ({shards})",
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_gb": usage.ru_maxrss * 1024 / 1e9,  # KiB on Linux
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="*", type=Path, help="dataset directories (default: the 1M demo data)")
    ap.add_argument("--shards", default="1,auto", help="comma-separated shard settings: a number or auto")
    args = ap.parse_args()
    datasets = args.data or [_util.ensure_dataset()]
    print(f"machine: {_util.machine()}")
    print(f"command: leadscore features --data D --as-of {AS_OF} --out F [--shards N]")
    print(f"{'leads':>10} {'events':>12} {'shards':>10} {'wall s':>8} {'CPU s':>8} {'peak GB':>8}")
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        for data in datasets:
            for shards in args.shards.split(","):
                r = run(data, shards.strip(), Path(tmp))
                ok = "" if r["peak_gb"] <= GOAL_GB else f"  (over the {GOAL_GB} GB goal)"
                print(
                    f"{r['leads'] or 0:>10,} {r['events'] or 0:>12,} {r['shards']:>10} {r['wall_s']:>8.0f} "
                    f"{r['cpu_s']:>8.0f} {r['peak_gb']:>8.2f}{ok}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
