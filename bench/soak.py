"""Soak test (not a test of the suite): `leadscore serve --workers 2` on SQLite under minutes of mixed load.

  python bench/soak.py [--minutes 10] [--workers 2] [--scorers 6] [--swap-every 60] [--flood-seconds 60]
                      [--json out.json]

Load, all on loopback and each loop bounded by the deadline: score requests (1 lead stateless, now and then
100 leads, now and then a stored lead by id), lead upserts + events, feedback with idempotency keys, and one
model swap a minute (`leadscore promote --version 2` / `leadscore rollback` of two registered versions, each
followed by POST /v1/admin/reload). Reported:
- server errors: 5xx answers (503 load shedding counted apart) and failed connections or client timeouts;
- lost acknowledged feedback: every feedback answered 2xx must be in the store afterwards;
- RSS of each worker: after the first minute of load (warm) and at the end, and the growth (goal <= 10 %);
- model swaps: how many, and whether each reload answer said every worker serves the new version;
- the score log's bytes per million scores (SQLite's dbstat of the score_log table and its indexes, and the
  database file over the rows);
- with --flood-seconds, a flood after the mixed load: --flood-connections (200) clients sending 1,000-lead
  requests back to back with a 10 s timeout: answers by status, client timeouts, p50/p99, RSS per worker
  before, at the peak and 30 s after.
Without --data, demo data (4,000 leads, seed 0) is generated and a scorecard trained into a temporary MLflow;
version 2 is the same model registered again (a swap then changes the version, not the scores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _util import machine, small_demo  # noqa: E402
from api import free_port, stop, wait_http  # noqa: E402

KEYS = {"scorer": "sc_soak_key_0001", "sales": "sa_soak_key_0001", "admin": "ad_soak_key_0001"}
BIN = Path(sys.executable).parent


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def workers_of(parent: int) -> list[int]:
    """The server's worker processes: children of the uvicorn parent that serve (not the resource tracker)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmd:
            out.append(int(d.name))
    return sorted(out)


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.status: Counter = Counter()  # (kind, status)
        self.failures: list[str] = []  # connection errors, timeouts
        self.scores = 0
        self.acked_feedback: list[str] = []  # idempotency keys answered 2xx

    def add(self, kind: str, r: httpx.Response | None, error: Exception | None = None) -> None:
        with self.lock:
            if error is not None:
                self.failures.append(f"{kind}: {error!r}"[:300])
            else:
                self.status[(kind, r.status_code)] += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scorers", type=int, default=6, help="threads sending score requests back to back")
    ap.add_argument("--swap-every", type=float, default=60, help="seconds between model swaps")
    ap.add_argument("--data", type=Path, help="dataset directory (default: generate demo data)")
    ap.add_argument(
        "--flood-seconds",
        type=float,
        default=0,
        help="after the mixed load, this long a flood of 1,000-lead requests (default: none)",
    )
    ap.add_argument("--flood-connections", type=int, default=200)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="leadscore-soak-"))
    dbfile = tmp / "leadscore.db"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
        "LEADSCORE_API_KEYS": ",".join(f"{r}:{k}" for r, k in KEYS.items()),
        "LEADSCORE_DATABASE_URL": f"sqlite:///{dbfile}",
        "LEADSCORE_LOG_LEVEL": "WARNING",
    }
    leadscore = [str(BIN / "leadscore")]
    data = small_demo(leadscore, env, tmp, args.data)
    print(f"training a scorecard into {tmp} ...", file=sys.stderr, flush=True)
    subprocess.run(
        [*leadscore, "train", "--data", str(data), "--model", "scorecard"],
        env=env,
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    _register_again(env["MLFLOW_TRACKING_URI"])

    port = free_port()
    log = tmp / "server.log"
    server = subprocess.Popen(
        [*leadscore, "serve", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        cwd=tmp,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    results: dict = {
        "command": " ".join(["python bench/soak.py", *sys.argv[1:]]),
        "machine": machine(),
        "minutes": args.minutes,
        "workers": args.workers,
    }
    tally = Tally()
    swaps: list[dict] = []
    rss: dict[str, dict] = {}
    try:
        wait_http(f"{base}/readyz", server, timeout=600)
        example = httpx.get(f"{base}/v1/model", headers=_auth("scorer")).json()["example"]["leads"][0]
        with httpx.Client(base_url=base, headers=_auth("scorer"), timeout=30) as c:  # the leads scored by id
            for i in range(200):
                _call(
                    tally,
                    "lead",
                    c.put,
                    f"/v1/leads/ev-{i}",
                    json={"created_at": example["created_at"], "attributes": example["attributes"]},
                )
        stop_at = time.monotonic() + args.minutes * 60
        threads = [
            threading.Thread(target=_scorer, args=(base, example, stop_at, tally, i), daemon=True)
            for i in range(args.scorers)
        ]
        threads += [
            threading.Thread(target=_events, args=(base, example, stop_at, tally), daemon=True),
            threading.Thread(target=_feedback, args=(base, stop_at, tally), daemon=True),
            threading.Thread(
                target=_swapper, args=(base, env, stop_at, args.swap_every, swaps, tally), daemon=True
            ),
        ]
        for t in threads:
            t.start()
        warm_at = time.monotonic() + min(60, args.minutes * 60 / 3)
        while time.monotonic() < stop_at:  # RSS of each worker: when warm, then at the end
            time.sleep(min(5, max(0, stop_at - time.monotonic())))
            now = time.monotonic()
            for pid in workers_of(server.pid):
                entry = rss.setdefault(str(pid), {})
                if now >= warm_at and "warm_mib" not in entry:
                    entry["warm_mib"] = rss_mib(pid)
                entry["end_mib"] = rss_mib(pid)
                entry["peak_mib"] = max(entry.get("peak_mib") or 0, entry["end_mib"] or 0)
        for t in threads:
            t.join(timeout=120)
        if args.flood_seconds > 0:
            results["flood"] = _flood(base, example, server.pid, args.flood_seconds, args.flood_connections)
        metrics = httpx.get(f"{base}/metrics", headers=_auth("scorer")).text
        results["server_stop_s"] = stop(server)
    finally:
        if server.poll() is None:
            server.kill()

    # --- afterwards: what the store kept --------------------------------------------------------------------
    conn = sqlite3.connect(dbfile)
    stored_keys = {r[0] for r in conn.execute("SELECT idempotency_key FROM feedback")}
    rows = conn.execute("SELECT COUNT(*) FROM score_log").fetchone()[0]
    try:
        table_bytes = conn.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name = 'score_log' OR name LIKE 'ix_score_log%'"
        ).fetchone()[0]
    except sqlite3.OperationalError:  # SQLite built without dbstat
        table_bytes = None
    conn.close()
    file_bytes = sum(p.stat().st_size for p in tmp.glob("leadscore.db*"))
    server_errors = {f"{k} {s}": n for (k, s), n in tally.status.items() if s >= 500 and s != 503}
    results.update(
        {
            "requests": {f"{k} {s}": n for (k, s), n in sorted(tally.status.items())},
            "server_errors": sum(server_errors.values()),
            "server_error_detail": server_errors,
            "shed_503": sum(n for (k, s), n in tally.status.items() if s == 503),
            "client_failures": len(tally.failures),
            "client_failure_examples": tally.failures[:5],
            "feedback_acknowledged": len(tally.acked_feedback),
            "feedback_lost": len([k for k in tally.acked_feedback if k not in stored_keys]),
            "scores_served": tally.scores,
            "score_log_rows": rows,
            # leads answered 200 without a row: the drops of every worker (one scrape of /metrics sees one
            # worker)
            "score_log_dropped": tally.scores + results.get("flood", {}).get("leads_scored", 0) - rows,
            "score_log_dropped_one_worker_metric": _metric_sum(
                metrics, "leadscore_score_log_dropped_rows_total"
            ),
            "score_log_table_bytes_per_million": None
            if table_bytes is None
            else round(table_bytes / rows * 1e6),
            "database_file_bytes_per_million_scores": round(file_bytes / max(rows, 1) * 1e6),
            "rss_per_worker": {
                pid: {
                    **v,
                    "growth": (
                        round(v["end_mib"] / v["warm_mib"] - 1, 3)
                        if v.get("warm_mib") and v.get("end_mib")
                        else None
                    ),
                }
                for pid, v in rss.items()
            },
            "swaps": len(swaps),
            "swaps_all_workers": sum(1 for s in swaps if s.get("all_workers")),
            "swap_detail": swaps,
            "server_log_errors": [line for line in log.read_text().splitlines() if " ERROR " in line][:5],
        }
    )
    print(json.dumps(results, indent=1))
    _summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


def _flood(base: str, example: dict, server_pid: int, seconds: float, connections: int) -> dict:
    """`connections` clients sending 1,000-lead requests back to back for `seconds`, each with a 10 s timeout
    (as in issue 13): answers by status, client timeouts, latencies, and each worker's RSS before, at its
    peak and 30 s after."""
    import asyncio
    import statistics

    body = json.dumps({"leads": [{**example, "lead_id": f"flood-{i}"} for i in range(1000)]}).encode()
    before = {pid: rss_mib(pid) for pid in workers_of(server_pid)}
    peak = dict(before)
    statuses: Counter = Counter()
    latency: dict[int, list[float]] = {}
    failures: Counter = Counter()
    done = threading.Event()

    def sample():
        while not done.wait(1):
            for pid in peak:
                peak[pid] = max(peak[pid] or 0, rss_mib(pid) or 0)

    async def client(c: httpx.AsyncClient, stop_at: float):
        while time.monotonic() < stop_at:
            t = time.monotonic()
            try:
                r = await c.post("/v1/score", content=body)
            except httpx.HTTPError as e:
                failures[type(e).__name__] += 1
                continue
            statuses[r.status_code] += 1
            latency.setdefault(r.status_code, []).append(time.monotonic() - t)

    async def run():
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(
            base_url=base,
            timeout=10,
            limits=limits,
            headers={**_auth("scorer"), "Content-Type": "application/json"},
        ) as c:
            stop_at = time.monotonic() + seconds
            await asyncio.gather(*(client(c, stop_at) for _ in range(connections)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    asyncio.run(run())
    done.set()
    after_ok = httpx.post(
        f"{base}/v1/score",
        content=body,
        timeout=30,
        headers={**_auth("scorer"), "Content-Type": "application/json"},
    ).status_code
    time.sleep(30)
    after = {pid: rss_mib(pid) for pid in before}

    def ms(values: list[float], q: float) -> float | None:
        return round(statistics.quantiles(values, n=100)[int(q) - 1] * 1000) if len(values) >= 2 else None

    return {
        "connections": connections,
        "seconds": seconds,
        "body_bytes": len(body),
        "statuses": dict(statuses),
        "client_failures": dict(failures),
        "leads_scored": 1000 * (statuses[200] + (after_ok == 200)),
        "p50_ms": {s: ms(v, 50) for s, v in latency.items()},
        "p99_ms": {s: ms(v, 99) for s, v in latency.items()},
        "rss_mib": {
            str(pid): {"before": before[pid], "peak": peak[pid], "30s_after": after[pid]} for pid in before
        },
        "a_request_afterwards": after_ok,
    }


def _summary(r: dict) -> None:
    growth = [v["growth"] for v in r["rss_per_worker"].values() if v.get("growth") is not None]
    print(
        f"\n{r['minutes']:g} min, {r['workers']} workers: {sum(r['requests'].values()):,} requests, "
        f"{r['scores_served']:,} leads scored; server errors {r['server_errors']}, client failures "
        f"{r['client_failures']}, shed 503 {r['shed_503']}; "
        f"feedback acknowledged {r['feedback_acknowledged']:,}, "
        f"lost {r['feedback_lost']}; swaps {r['swaps']} ({r['swaps_all_workers']} answered with every worker "
        f"switched); RSS growth per worker after warm-up {', '.join(f'{g:+.1%}' for g in growth)}; score log "
        f"{r['score_log_table_bytes_per_million'] or 0:,} bytes per million scores (table + indexes), "
        f"database file {r['database_file_bytes_per_million_scores']:,} per million; dropped "
        f"{r['score_log_dropped']:g}"
    )

    if "flood" in r:
        f = r["flood"]
        print(
            f"flood: {f['connections']} connections x {f['seconds']:g} s of 1,000-lead requests: "
            f"{f['statuses']}, client failures {f['client_failures'] or 0}, "
            f"p50 ms {f['p50_ms']}, p99 ms {f['p99_ms']}; RSS per "
            f"worker MiB (before, peak, 30 s after) "
            + ", ".join(
                f"{v['before']:.0f}/{v['peak']:.0f}/{v['30s_after']:.0f}" for v in f["rss_mib"].values()
            )
        )


def _metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def _auth(role: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[role]}"}


def _register_again(tracking_uri: str) -> None:
    """Version 2: the champion's model registered once more, so promote/rollback have two versions."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)  # the registry resolves the source (a logged model) in this store
    client = MlflowClient(tracking_uri)
    v1 = client.get_model_version_by_alias("leadscore", "champion")
    client.create_model_version("leadscore", v1.source, run_id=v1.run_id)


def _call(tally: Tally, kind: str, fn, *a, **kw) -> httpx.Response | None:
    try:
        r = fn(*a, **kw)
    except httpx.HTTPError as e:
        tally.add(kind, None, e)
        return None
    tally.add(kind, r)
    return r


def _scorer(base: str, example: dict, stop_at: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    one = json.dumps({"leads": [example]})
    hundred = json.dumps({"leads": [{**example, "lead_id": f"soak-{i}"} for i in range(100)]})
    with httpx.Client(
        base_url=base, headers={**_auth("scorer"), "Content-Type": "application/json"}, timeout=30
    ) as c:
        while time.monotonic() < stop_at:
            pick = rng.random()
            if pick < 0.05:
                body, n = hundred, 100
            elif pick < 0.10:
                body, n = json.dumps({"leads": [{"lead_id": f"ev-{rng.randrange(200)}"}]}), 1
            else:
                body, n = one, 1
            r = _call(tally, "score", c.post, "/v1/score", content=body)
            if r is not None and r.status_code == 200:
                with tally.lock:
                    tally.scores += n


def _events(base: str, example: dict, stop_at: float, tally: Tally) -> None:
    """Events appended to the 200 stored leads (which the scorers also score by id)."""
    with httpx.Client(base_url=base, headers=_auth("scorer"), timeout=30) as c:
        rng = random.Random(1)
        while time.monotonic() < stop_at:
            events = [
                {**rng.choice(example["events"]), "lead_id": f"ev-{rng.randrange(200)}"} for _ in range(20)
            ]
            _call(tally, "events", c.post, "/v1/events", json={"events": events})
            time.sleep(0.05)


def _feedback(base: str, stop_at: float, tally: Tally) -> None:
    with httpx.Client(base_url=base, headers=_auth("sales"), timeout=30) as c:
        i = 0
        while time.monotonic() < stop_at:
            key = f"soak-fb-{i}"
            r = _call(
                tally,
                "feedback",
                c.post,
                "/v1/feedback",
                json={
                    "lead_id": f"ev-{i % 200}",
                    "outcome": "won" if i % 3 else "lost",
                    "idempotency_key": key,
                },
            )
            if r is not None and 200 <= r.status_code < 300:
                with tally.lock:
                    tally.acked_feedback.append(key)
            i += 1
            time.sleep(0.02)


def _swapper(base: str, env: dict, stop_at: float, every: float, swaps: list, tally: Tally) -> None:
    """One swap per `every` seconds: promote version 2, then roll back to 1, ...; each with an admin
    reload."""
    n = 0
    next_at = time.monotonic() + every
    with httpx.Client(base_url=base, headers=_auth("admin"), timeout=60) as c:
        while (
            next_at < stop_at
        ):  # on a fixed cadence: the CLI's own start-up (seconds) does not delay the next
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += every
            cmd = ["promote", "--version", "2"] if n % 2 == 0 else ["rollback"]
            subprocess.run([str(BIN / "leadscore"), *cmd], env=env, check=True, capture_output=True)
            t = time.monotonic()
            r = _call(tally, "reload", c.post, "/v1/admin/reload")
            body = r.json() if r is not None and r.status_code == 200 else {}
            swaps.append(
                {
                    "to": "2" if n % 2 == 0 else "1",
                    "status": r.status_code if r is not None else None,
                    "version": body.get("version"),
                    "all_workers": body.get("all_workers"),
                    "workers": [w["version"] for w in body.get("workers", [])],
                    "seconds": round(time.monotonic() - t, 2),
                }
            )
            n += 1


if __name__ == "__main__":
    main()
