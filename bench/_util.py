"""Shared by the benchmarks: the cached 1M-lead dataset, the machine description, child-process runs
that measure wall time and peak memory (ru_maxrss of the child: numpy allocations included, unlike
tracemalloc) and the median time of an in-process call."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_LEADS = int(os.environ.get("LEADSCORE_BENCH_LEADS", "1000000"))
SEED = 0


def median_ms(fn, runs: int, warmup: int = 1) -> float:
    """The median wall time of `fn()` over `runs` calls after `warmup` untimed ones, in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def bench_dir() -> Path:
    default = Path("/tmp/leadscore-bench") / ("1m" if N_LEADS == 1_000_000 else f"{N_LEADS}")
    return Path(os.environ.get("LEADSCORE_BENCH_DIR", default))


def ensure_dataset() -> Path:
    """The demo dataset of N_LEADS leads (seed 0), generated once into the cache directory."""
    data = bench_dir()
    if (data / "dataset.json").exists():
        return data
    from leadscore.demo.generate import generate

    tmp = data.with_name(data.name + ".tmp")
    print(f"generating {N_LEADS:,} demo leads into {data} (once; takes a few minutes) ...", flush=True)
    t = time.perf_counter()
    info = generate(tmp, N_LEADS, seed=SEED)
    tmp.rename(data)
    print(
        f"  {info.n_leads:,} leads, {info.n_events:,} events in {time.perf_counter() - t:.0f} s", flush=True
    )
    return data


def small_demo(leadscore: list[str], env: dict, tmp: Path, given: Path | None) -> Path:
    """`given`, or 4,000 demo leads (seed 0) generated into `tmp` by the CLI: the servers' benchmarks."""
    if given is not None:
        return given
    data = tmp / "data"
    subprocess.run(
        [*leadscore, "demo-data", "--leads", "4000", "--seed", "0", "--out", str(data)],
        env=env,
        check=True,
        capture_output=True,
    )
    return data


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = (
            next(
                int(line.split()[1])
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            )
            / 2**20
        )
    except (OSError, StopIteration):
        mem = float("nan")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {load:.1f} at the start"
    )


def run_child(script: str, *args: str) -> tuple[dict, float, float]:
    """Run `python script --child args` and return (its JSON result, wall seconds, peak RSS in GiB)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, script, "--child", *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{script} child failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    return result, wall, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


class Stages:
    """Wall time of named stages, printed as they finish (to stderr) and returned as a dict."""

    def __init__(self):
        self.t0 = self.t = time.perf_counter()
        self.times: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(now - self.t, 2)
        print(f"  {name}: {now - self.t:.1f} s", file=sys.stderr, flush=True)
        self.t = now

    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 2)
