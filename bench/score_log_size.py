"""Bytes per score-log row on SQLite (and PostgreSQL with --pg URL): the compact rows the service writes
(features as a JSON array of values, the names stored once per feature set; reasons as arrays) against
the keyed objects written before migration 0003, for real scores of demo leads.

    python bench/score_log_size.py [--rows 20000] [--pg postgresql+psycopg://...]

Not a speed benchmark: a size, measured after VACUUM (SQLite: the file; PostgreSQL: the table with its
indexes and TOAST), divided by the rows. Goal: <= 1.5 KB a row, 1.5 GB per million scores.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

GOAL_BYTES = 1500


def scored_rows(n: int) -> list[dict]:
    """`n` score-log rows of 2,000 demo leads scored by a scorecard at several moments, as the service
    builds them (`serve.scoring.score_request`)."""
    from leadscore.features import schema as S
    from leadscore.features.live import lead_features, to_ms
    from leadscore.features.loading import load_dataset
    from leadscore.model.inputs import feature_snapshots
    from leadscore.model.train import TrainConfig, train

    from leadscore.demo.generate import generate

    data = Path(tempfile.mkdtemp()) / "data"
    generate(data, 2000, seed=0)
    ds = load_dataset(data)
    model = train(ds, TrainConfig(model="scorecard")).model
    events = dict(ds.events.groupby(ds.events[S.LEAD_ID].astype(str)))
    leads = []
    for r in ds.leads.itertuples(index=False):
        lid = str(getattr(r, S.LEAD_ID))
        ev = events.get(lid)
        leads.append(
            {
                "lead_id": lid,
                "created_at": getattr(r, S.CREATED_AT).to_pydatetime(),
                "attributes": {a: getattr(r, a) for a in S.LEAD_ATTRIBUTES if isinstance(getattr(r, a), str)},
                "events": []
                if ev is None
                else [
                    {"type": t, "timestamp": ts.to_pydatetime(), "page": p if isinstance(p, str) else None}
                    for t, ts, p in zip(ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE], strict=False)
                ],
            }
        )
    now = datetime.now(UTC)
    rows: list[dict] = []
    for k in range(n // len(leads) + 1):
        as_of = [d["created_at"] + timedelta(days=3 + 7 * k) for d in leads]
        values = lead_features(leads, [to_ms(t) for t in as_of])
        results = model.results(values, [d["lead_id"] for d in leads])
        rows += [
            {
                "lead_id": r["lead_id"],
                "scored_at": now,
                "as_of": t,
                "model_version": "1",
                "probability": r["probability"],
                "score": r["score"],
                "grade": r["grade"],
                "qualified": r["qualified"],
                "features": f,
                "reasons": r["reasons"],
            }
            for r, t, f in zip(
                results, as_of, feature_snapshots(values, model.encoder.features), strict=False
            )
        ]
    return rows[:n]


def write(url: str, rows: list[dict], compact: bool) -> None:
    from leadscore.serve import db, store

    db.migrate(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            part = rows[i : i + 2000]
            if compact:  # what the service writes
                store.insert_score_log(conn, [store.score_log_row(r) for r in part])
            else:  # the keyed objects of rows written before migration 0003
                conn.execute(sa.insert(db.score_log), part)
    engine.dispose()


def size(url: str) -> int:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if url.startswith("sqlite"):
            conn.exec_driver_sql("VACUUM")
            engine.dispose()
            return Path(url.removeprefix("sqlite:///")).stat().st_size
        conn.exec_driver_sql("VACUUM FULL score_log")
        n = conn.exec_driver_sql("SELECT pg_total_relation_size('score_log')").scalar()
    engine.dispose()
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--pg", help="a PostgreSQL server URL (a database is created on it for each format)")
    args = ap.parse_args()
    rows = scored_rows(args.rows)
    ok = True
    for compact in (False, True):
        name = "compact" if compact else "keyed (before 0003)"
        urls = {"SQLite": f"sqlite:///{Path(tempfile.mkdtemp()) / 'size.db'}"}
        if args.pg:
            admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
            db_name = f"ls_size_{int(compact)}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
                conn.exec_driver_sql(f'CREATE DATABASE "{db_name}"')
            admin.dispose()
            urls["PostgreSQL"] = args.pg.rsplit("/", 1)[0] + f"/{db_name}"
        for where, url in urls.items():
            write(url, rows, compact)
            per_row = size(url) / len(rows)
            print(
                f"{where:10s} {name:20s} {per_row:7.0f} bytes a row, "
                f"{per_row * 1e6 / 1e9:5.2f} GB per million scores"
            )
            if compact and where == "SQLite":
                ok = per_row <= GOAL_BYTES
    print(f"goal (SQLite, <= {GOAL_BYTES} bytes a row): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
