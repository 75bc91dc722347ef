"""Benchmark: `leadscore score` against `leadscore score --engine spark --master local[2]` on one machine.

Runs both real commands on the same demo dataset (seed 0) with the same registered champion (bench/
rescore.py's private registry: bench/score.py's boosted model), each as a child under `/usr/bin/time -v`,
and samples the whole process tree every 0.25 s with psutil (the Spark run is a Python driver, a JVM and
one Python worker per core; `time -v` sees only the largest single process's peak and the CPU of the
children that were waited for). Reports wall time, CPU (`time -v`, and summed over every process seen in
the tree), peak RSS (largest process, and the tree's sum at its largest sample) and the 1-minute load
average before and after each run. Then asserts the two outputs are identical, lead by lead: probability,
score, grade, qualified, explored, insight and every reason column.

Partitions: `leadscore score --engine spark` makes 2 x `spark.default.parallelism` lead-hash partitions; the
bench sets it to 8 (`--parallelism`, through PYSPARK_SUBMIT_ARGS), so 16 partitions of ~62k leads and ~2M
events at 1M leads. With Spark's local[2] default (4 partitions of 250k leads) the command fails at 1M:
a partition of more than 200k leads (model.batch.CHUNK_LEADS) comes back from `score_partition` as a
multi-chunk Arrow table, and pyspark cannot send pandas 3's chunked string columns ("Cannot convert
pyarrow.lib.ChunkedArray to pyarrow.lib.Array"; docs/benchmarks.md); fixed since in `score_partition`
(the chunks are combined), but the 1M run at the default has not been repeated.

Run: `python bench/spark.py [--leads 1000000] [--master 'local[2]'] [--parallelism 8] [--out results.md]`
(1M uses the cached benchmark dataset, `_util.ensure_dataset`; other sizes are made once with
`leadscore demo-data --leads N --seed 0` next to it). `--out` also writes the markdown table to a file.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402
import rescore  # noqa: E402  (its private registry holds the benchmark champion)

MODEL = "models:/leadscore@champion"


def dataset(n: int) -> Path:
    """The seed-0 demo dataset of n leads: the cached 1M one, or made once by `leadscore demo-data`."""
    if n == 1_000_000:
        return _util.ensure_dataset()
    data = _util.bench_dir().parent / f"spark-demo-{n}"
    if not (data / "dataset.json").exists():
        print(f"leadscore demo-data --leads {n} --seed 0 --out {data} (once) ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "leadscore",
                "demo-data",
                "--leads",
                str(n),
                "--seed",
                "0",
                "--out",
                str(data),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return data


class TreeSampler(threading.Thread):
    """Peak summed RSS of a process and all its descendants, and each one's last seen CPU time."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(pid), every
        self.peak_rss = 0
        self.cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> user + system seconds
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            rss = 0
            for p in procs:
                try:
                    with p.oneshot():
                        rss += p.memory_info().rss
                        t = p.cpu_times()
                        self.cpu[(p.pid, p.create_time())] = t.user + t.system
                except psutil.NoSuchProcess:
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            self.stop.wait(self.every)


def measure(cmd: list[str], env: dict, log: Path) -> dict:
    """Run `cmd` under /usr/bin/time -v; its figures, the tree's sampled ones and the load around it."""
    load_before = os.getloadavg()[0]
    with log.open("w") as out:
        proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], env=env, stdout=out, stderr=out)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        proc.wait()
        sampler.stop.set()
        sampler.join()
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{text[-3000:]}")

    def field(name: str) -> str:
        m = re.search(rf"^\s*{re.escape(name)}: (.+)$", text, re.M)
        assert m, f"no '{name}' in /usr/bin/time -v output ({log})"
        return m.group(1).strip()

    h, m_, s = (["0", "0", *field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")])[-3:]
    return {
        "wall_s": int(h) * 3600 + int(m_) * 60 + float(s),
        "cpu_s": float(field("User time (seconds)")) + float(field("System time (seconds)")),
        "tree_cpu_s": sum(sampler.cpu.values()),
        "peak_gib": int(field("Maximum resident set size (kbytes)")) / 2**20,
        "tree_peak_gib": sampler.peak_rss / 2**30,
        "load": (load_before, os.getloadavg()[0]),
    }


def check_identical(local: Path, spark: Path) -> int:
    """Assert the two outputs have the same leads with the same values; the number of leads."""
    import pandas as pd

    a = pd.read_parquet(local).set_index("lead_id").sort_index()
    b = pd.read_parquet(spark).set_index("lead_id").sort_index()
    assert list(a.columns) == list(b.columns), (list(a.columns), list(b.columns))
    assert a.index.equals(b.index), "different leads"
    assert (pd.to_datetime(a["as_of"], utc=True) == pd.to_datetime(b["as_of"], utc=True)).all(), "as_of"
    for column in a.columns.drop("as_of"):
        want = a[column].astype(object).where(a[column].notna(), None).tolist()
        have = b[column].astype(object).where(b[column].notna(), None).tolist()
        assert have == want, f"column {column} differs"
    return len(a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--parallelism", type=int, default=8, help="spark.default.parallelism (0: Spark's)")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table to this file")
    args = ap.parse_args()
    data = dataset(args.leads)
    env = {**os.environ, "MLFLOW_TRACKING_URI": rescore.ensure_champion(_util.bench_dir().parent)}
    if args.parallelism:
        env["PYSPARK_SUBMIT_ARGS"] = f"--conf spark.default.parallelism={args.parallelism} pyspark-shell"
    work = data.parent / f"spark-bench-{args.leads}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    base = ["leadscore", "score", "--data", str(data), "--model", MODEL]
    runs = {  # the run names are the table's rows
        "local": [*base, "--out", str(work / "local.parquet")],
        f"spark {args.master}": [
            *base,
            "--out",
            str(work / "spark.parquet"),
            "--engine",
            "spark",
            "--master",
            args.master,
        ],
    }
    lines = [
        f"machine: {_util.machine()}",
        f"data: {data} ({args.leads:,} leads); model: {MODEL} at {env['MLFLOW_TRACKING_URI']}",
        *(f"{name}: `{' '.join(cmd)}`" for name, cmd in runs.items()),
        f"PYSPARK_SUBMIT_ARGS={env.get('PYSPARK_SUBMIT_ARGS', '')!r}",
        "",
        "| run | wall | CPU (`time -v`) | CPU (tree) | peak RSS, largest process | peak RSS, tree "
        "| load before → after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    print("\n".join(lines[:-3]), flush=True)
    try:
        for name, cmd in runs.items():
            r = measure([sys.executable, "-m", *cmd], env, work / f"{name}.log")
            row = (
                f"| {name} | {r['wall_s']:.0f} s | {r['cpu_s']:.0f} s | {r['tree_cpu_s']:.0f} s "
                f"| {r['peak_gib']:.2f} GiB | {r['tree_peak_gib']:.2f} GiB "
                f"| {r['load'][0]:.1f} → {r['load'][1]:.1f} |"
            )
            print(f"  {row}", file=sys.stderr, flush=True)
            lines.append(row)
        n = check_identical(work / "local.parquet", work / "spark.parquet")
        lines += ["", f"outputs identical: {n:,} leads, every column (as_of compared as UTC instants)"]
    finally:
        (work / "local.parquet").unlink(missing_ok=True)  # the outputs: 35 MB and more a million leads
        shutil.rmtree(work / "spark.parquet", ignore_errors=True)
    print("\n".join(lines[-(len(runs) + 4) :]))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
