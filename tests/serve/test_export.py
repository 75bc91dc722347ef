"""The store as a dataset: what applications sent through the API (leads, events, feedback) comes back
from `leadscore export` in the canonical layout, and `load_dataset` reads it without a problem, on SQLite
and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from leadscore.features import schema as S
from leadscore.features.loading import load_dataset
from leadscore.features.writing import write_dataset
from leadscore.serve import db, store
from leadscore.serve.export import store_dataset
from support import log_scores, score_entry
from typer.testing import CliRunner

from leadscore.cli.main import app

N_LEADS = 150


@pytest.fixture
def populated(database_url, demo_dataset):
    """A store holding 150 demo leads from the middle of the data, their events and their verdicts, won and
    lost as feedback: what an application would have sent through PUT /v1/leads, POST /v1/events,
    POST /v1/feedback."""
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    leads = demo_dataset.leads.sort_values([S.CREATED_AT, S.LEAD_ID]).iloc[2000 : 2000 + N_LEADS]
    ids = set(leads[S.LEAD_ID])
    for r in leads.itertuples(index=False):
        attrs = {a: getattr(r, a) for a in S.LEAD_ATTRIBUTES if isinstance(getattr(r, a), str)}
        store.upsert_lead(engine, r.lead_id, r.created_at.to_pydatetime(), attrs)
    ev = demo_dataset.events[demo_dataset.events[S.LEAD_ID].astype(str).isin(ids)]
    store.add_events(
        engine,
        [
            {
                "lead_id": str(lid),
                "type": str(t),
                "timestamp": ts.to_pydatetime(),
                "page": p if isinstance(p, str) else None,
            }
            for lid, t, ts, p in zip(
                ev[S.LEAD_ID], ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE], strict=False
            )
        ],
    )
    out = demo_dataset.outcomes[
        demo_dataset.outcomes[S.LEAD_ID].isin(ids)
        & demo_dataset.outcomes[S.OUTCOME].isin(["qualified", "disqualified", "won", "lost"])
    ]
    for r in out.itertuples(index=False):
        store.add_feedback(
            engine,
            r.lead_id,
            r.outcome,
            r.reason if r.outcome == "disqualified" else None,
            at=r.at.to_pydatetime(),
        )
    yield engine, leads, ev, out
    engine.dispose()


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.sort_values(by, kind="stable").reset_index(drop=True)


def test_the_store_round_trips_as_a_dataset(populated, demo_dataset, tmp_path):
    engine, leads, ev, out = populated
    assert len(out) > 10 and out[S.OUTCOME].isin(["won", "lost"]).any()
    # when the store is exported as of the demo's snapshot and read back by the loader
    dataset = store_dataset(engine, demo_dataset.snapshot_at.to_pydatetime())
    back = load_dataset(write_dataset(dataset, tmp_path / "export"))
    # then nothing is reported and the snapshot is the as-of moment
    assert not [n for n in back.notes if "duplicate" in n or "no dataset.json" in n]
    assert back.snapshot_at == demo_dataset.snapshot_at
    # and the leads are the ones sent, with their attributes and creation times
    got = _sorted(back.leads[list(S.LEAD_COLUMNS)], [S.LEAD_ID])
    want = _sorted(leads[list(S.LEAD_COLUMNS)], [S.LEAD_ID])
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_categorical=False)
    # and so are the events (type, time to the millisecond, page)
    cols = [S.LEAD_ID, S.TIMESTAMP, S.EVENT_TYPE, S.PAGE]
    got_ev = _sorted(
        back.events[cols].astype(dict.fromkeys((S.LEAD_ID, S.EVENT_TYPE, S.PAGE), object)), cols[:3]
    )
    want_ev = _sorted(ev[cols].astype(dict.fromkeys((S.LEAD_ID, S.EVENT_TYPE, S.PAGE), object)), cols[:3])
    assert len(got_ev) == len(want_ev) > 0
    np.testing.assert_array_equal(got_ev[S.TIMESTAMP].to_numpy(), want_ev[S.TIMESTAMP].to_numpy())
    for c in (S.LEAD_ID, S.EVENT_TYPE):
        assert got_ev[c].tolist() == want_ev[c].tolist()
    assert [p if isinstance(p, str) else None for p in got_ev[S.PAGE]] == [
        p if isinstance(p, str) else None for p in want_ev[S.PAGE]
    ]
    # and the feedback is the outcomes table (one verdict per lead, won/lost as given)
    key = [S.LEAD_ID, S.OUTCOME, S.OUTCOME_AT]
    got_out = _sorted(back.outcomes[key].astype({S.LEAD_ID: object}), key)
    want_out = _sorted(out[key].astype({S.LEAD_ID: object}), key)
    pd.testing.assert_frame_equal(got_out, want_out, check_dtype=False)


def test_as_of_keeps_only_what_was_known_then(populated, demo_dataset):
    engine, leads, ev, out = populated
    # given a moment in the middle of the stored leads' lives
    moment = leads[S.CREATED_AT].iloc[N_LEADS // 2] + timedelta(hours=1)
    # when the store is exported as of it
    dataset = store_dataset(engine, moment.to_pydatetime())
    # then no lead, event or outcome stamped after it is in the dataset, and the earlier ones all are
    assert dataset.snapshot_at == moment
    assert (dataset.leads[S.CREATED_AT] <= moment).all()
    assert len(dataset.leads) == int((leads[S.CREATED_AT] <= moment).sum())
    assert (dataset.events[S.TIMESTAMP] <= moment).all()
    known = set(dataset.leads[S.LEAD_ID])
    assert len(dataset.events) == int(((ev[S.TIMESTAMP] <= moment) & ev[S.LEAD_ID].isin(known)).sum())
    assert (dataset.outcomes[S.OUTCOME_AT] <= moment).all()


def test_a_later_verdict_corrects_the_first_one(database_url, tmp_path):
    # given a lead sales first disqualified, then called qualified
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    t0 = pd.Timestamp("2025-01-06T09:00:00Z").to_pydatetime()
    store.upsert_lead(engine, "L1", t0, {"source": "webinar"})
    store.add_feedback(engine, "L1", "disqualified", "no_budget", at=t0 + timedelta(days=3))
    store.add_feedback(engine, "L1", "qualified", at=t0 + timedelta(days=5))
    # when the store is exported
    back = load_dataset(write_dataset(store_dataset(engine, t0 + timedelta(days=30)), tmp_path / "x"))
    engine.dispose()
    # then the lead has one verdict: the latest word, dated when it was first decided
    assert back.outcomes[[S.LEAD_ID, S.OUTCOME]].values.tolist() == [["L1", "qualified"]]
    assert back.outcomes[S.OUTCOME_AT].iloc[0] == pd.Timestamp(t0 + timedelta(days=3))


def test_the_export_command_writes_a_loadable_dataset(tmp_path):
    # given a SQLite store with one lead
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    store.upsert_lead(engine, "L1", pd.Timestamp("2025-01-06T09:00:00Z").to_pydatetime(), {"country": "DE"})
    engine.dispose()
    # when it is exported from the command line
    res = CliRunner().invoke(
        app,
        [
            "export",
            "--out",
            str(tmp_path / "out"),
            "--database-url",
            url,
            "--as-of",
            "2025-02-01T00:00:00+01:00",
        ],
    )
    # then the directory loads, with the as-of moment as its snapshot
    assert res.exit_code == 0, res.output
    back = load_dataset(tmp_path / "out")
    assert back.leads[S.LEAD_ID].tolist() == ["L1"] and back.leads["country"].tolist() == ["DE"]
    assert back.snapshot_at == pd.Timestamp("2025-01-31T23:00:00Z")


@pytest.mark.parametrize(
    "url_of, message",
    [
        (lambda tmp: f"sqlite:///{tmp / 'missing.db'}", "does not exist"),
        (lambda tmp: "mysql://x@localhost/db", "not supported"),
    ],
)
def test_the_export_command_names_a_store_it_cannot_read(tmp_path, url_of, message):
    res = CliRunner().invoke(
        app, ["export", "--out", str(tmp_path / "out"), "--database-url", url_of(tmp_path)]
    )
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "out").exists()


def _score(
    engine, lead_id: str, at, qualified: bool, propensity: float | None, explored: bool | None = False
):
    entry = score_entry(
        lead_id, at, qualified=qualified, features={"x": 1.0}, propensity=propensity, explored=explored
    )
    log_scores(engine, [entry])


def test_the_score_log_becomes_the_selection_table_and_reads_back(database_url, tmp_path):
    # given leads scored by the service: H handed over on its second score (after a score below the
    # threshold), E handed over for exploration at 5 %, N never handed over (last score at 5 %), P logged
    # before propensities were recorded, and U stored but never scored
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    t0 = pd.Timestamp("2025-01-06T09:00:00Z").to_pydatetime()
    for lid in ("H", "E", "N", "P", "U"):
        store.upsert_lead(engine, lid, t0, {})
    _score(engine, "H", t0 + timedelta(days=1), False, 0.05)
    _score(engine, "H", t0 + timedelta(days=2), True, 1.0)
    _score(engine, "H", t0 + timedelta(days=3), True, 1.0)
    _score(engine, "E", t0 + timedelta(days=1), True, 0.05, explored=True)
    _score(engine, "N", t0 + timedelta(days=2), True, 1.0)  # scored after the snapshot below: not known then
    _score(engine, "N", t0 + timedelta(hours=2), False, 0.05)
    _score(engine, "N", t0 + timedelta(hours=5), False, 0.02)
    _score(engine, "P", t0 + timedelta(days=1), True, None, explored=None)
    # when the store is exported as of 1.5 days later and read back
    dataset = store_dataset(engine, t0 + timedelta(hours=36))
    engine.dispose()
    back = load_dataset(write_dataset(dataset, tmp_path / "export"))
    # then each scored lead has its rows: its hand-overs with their propensities, else the last score's
    sel = back.selection.set_index(S.LEAD_ID)
    assert sorted(sel.index) == ["E", "H", "N"]
    # (H was handed over only after the snapshot: as of then, its last score was below the threshold)
    assert pd.isna(sel.loc["H", S.HANDED_AT]) and sel.loc["H", S.PROPENSITY] == 0.05
    assert (
        sel.loc["E", S.HANDED_AT] == pd.Timestamp(t0 + timedelta(days=1))
        and sel.loc["E", S.PROPENSITY] == 0.05
    )
    assert pd.isna(sel.loc["N", S.HANDED_AT]) and sel.loc["N", S.PROPENSITY] == 0.02
    # and later, every hand-over is a row with its own propensity (H's two, not its score below the
    # threshold); P (no propensity recorded) and U (never scored) are absent
    engine = db.make_engine(database_url)
    later = load_dataset(write_dataset(store_dataset(engine, t0 + timedelta(days=10)), tmp_path / "later"))
    engine.dispose()
    day = pd.Timedelta(days=1)
    assert list(later.selection.itertuples(index=False, name=None)) == [
        ("E", pd.Timestamp(t0) + day, 0.05),
        ("H", pd.Timestamp(t0) + 2 * day, 1.0),
        ("H", pd.Timestamp(t0) + 3 * day, 1.0),
        ("N", pd.Timestamp(t0) + 2 * day, 1.0),
    ]
    # and a store whose score log predates propensities exports no selection table (trained as before)
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(db.score_log.update().values(propensity=None))
    assert store_dataset(engine, t0 + timedelta(days=10)).selection is None
    assert not (write_dataset(store_dataset(engine), tmp_path / "export") / "selection.parquet").exists()
    engine.dispose()


def test_one_millisecond_is_one_moment_decided_by_its_first_score_and_lost_propensities_are_counted(
    database_url,
):
    # given A scored below the threshold and, in the same millisecond, handed over; B handed over for
    # exploration, then scored twice more in that millisecond; C handed over at 5 %, then again on a row
    # with no propensity recorded; D scored below the threshold and handed over a millisecond later
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    t0 = pd.Timestamp("2025-01-06T09:00:00Z").to_pydatetime()
    us = timedelta(microseconds=300)
    for lid in "ABCD":
        store.upsert_lead(engine, lid, t0, {})
    _score(engine, "A", t0 + timedelta(days=1), False, 0.05)
    _score(engine, "A", t0 + timedelta(days=1) + us, True, 1.0)
    _score(engine, "B", t0 + timedelta(days=1), True, 0.05, explored=True)
    _score(engine, "B", t0 + timedelta(days=1) + us, False, 0.05)
    _score(engine, "B", t0 + timedelta(days=1) + 2 * us, True, 1.0)
    _score(engine, "C", t0 + timedelta(days=1), True, 0.05, explored=True)
    _score(engine, "C", t0 + timedelta(days=2), True, None, explored=None)
    _score(engine, "D", t0 + timedelta(days=1), False, 0.05)
    _score(engine, "D", t0 + timedelta(days=1, milliseconds=1), True, 1.0)
    # when the store is exported
    dataset = store_dataset(engine, t0 + timedelta(days=10))
    engine.dispose()
    # then each millisecond is decided by its first score: A was not handed over, B was (at 5 %), D was
    day = pd.Timestamp(t0) + pd.Timedelta(days=1)
    got = [(lid, None if pd.isna(at) else at) for lid, at, _ in dataset.selection.itertuples(index=False)]
    assert got == [("A", None), ("B", day), ("C", day), ("D", day + pd.Timedelta(milliseconds=1))]
    assert dataset.selection.loc[dataset.selection[S.LEAD_ID] == "B", S.PROPENSITY].tolist() == [0.05]
    # and C's later hand-over with no propensity is left out, and said
    assert "selection table: 1 later hand-over(s) with no recorded propensity left out" in " ".join(
        dataset.notes
    )


def test_retention_keeps_every_hand_over_and_each_leads_newest_row_so_the_selection_table_is_unchanged(
    database_url,
):
    # given leads scored long ago and since: X handed over for exploration at 5 % then scored above the
    # threshold, Y handed over on its second score, Z never handed over, W handed over once, scored no more
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    t0 = store.now() - timedelta(days=400)
    for lid in ("X", "Y", "Z", "W"):
        store.upsert_lead(engine, lid, t0, {})
    _score(engine, "X", t0 + timedelta(days=1), True, 0.05, explored=True)
    for d in (2, 3, 300):
        _score(engine, "X", t0 + timedelta(days=d), True, 1.0)
    _score(engine, "Y", t0 + timedelta(days=1), False, 0.05)
    _score(engine, "Y", t0 + timedelta(days=2), True, 1.0)
    _score(engine, "Y", t0 + timedelta(days=3), False, 0.05)
    for d in (1, 2, 3):
        _score(engine, "Z", t0 + timedelta(days=d), False, 0.05 - d / 100)
    _score(engine, "W", t0 + timedelta(days=1), True, 1.0)
    before = store_dataset(engine).selection
    # when retention deletes what is older than 180 days
    assert store.prune_all(engine, 180, max_rows=2) == 3
    # then only old scores that handed nobody over and are not their lead's newest are gone (Y's first, Z's
    # first two): every hand-over of X (its explored one weighs 20) and Y stays, and Z keeps its last score
    with engine.connect() as conn:
        left = conn.execute(
            sa.select(db.score_log.c.lead_id, db.score_log.c.qualified).order_by(db.score_log.c.id)
        ).all()
    assert [tuple(r) for r in left] == [("X", True)] * 4 + [
        ("Y", True),
        ("Y", False),
        ("Z", False),
        ("W", True),
    ]
    pd.testing.assert_frame_equal(store_dataset(engine).selection, before)
    assert len(before[before[S.LEAD_ID] == "X"]) == 4
    engine.dispose()


def _weighted_rate(rows: pd.DataFrame, w: np.ndarray) -> tuple[float, float]:
    """The weighted positive rate of `rows` and its standard error clustered by lead (a lead's rows share
    its outcome: the linearised ratio estimator's variance, summed per lead)."""
    y = rows["label"].to_numpy(dtype=float)
    rate = float(np.average(y, weights=w))
    per_lead = pd.Series(w * (y - rate)).groupby(rows[S.LEAD_ID].to_numpy()).sum().to_numpy()
    return rate, float(np.sqrt((per_lead**2).sum()) / w.sum())


def test_training_from_the_store_learns_every_scored_moment_not_the_moments_before_a_later_hand_over(
    tmp_path,
):
    from leadscore.features.feedback import with_feedback
    from leadscore.features.labels import QualifiedDefinition, training_rows
    from leadscore.model import exploration
    from leadscore.model.train import TrainConfig
    from leadscore.model.training_data import label_weights

    # given 5,000 stored leads, each scored by the service at ages 1, 3, 7 and 14 days; a good lead's score
    # climbs with its age, so many good leads cross the threshold only at a later score. The policy hands a
    # score over when it is at or above the threshold (propensity 1) or its lead is drawn for exploration
    # (30 %, per lead: propensity 0.3); sales give a verdict (the generator's truth, on day 40) only to the
    # leads handed over at least once
    n, ages, share = 5_000, np.array([1, 3, 7, 14]), 0.3
    rng = np.random.default_rng(11)
    ids = np.array([f"m{i:05d}" for i in range(n)], dtype=object)
    good = rng.uniform(size=n) < 0.25
    z = -1.3 + 2.4 * good[:, None] * (ages[None, :] / 14) + 0.7 * rng.normal(size=(n, len(ages)))
    above = z >= 0
    handed = above | exploration.explored(ids, share, 0)[:, None]
    t0 = pd.Timestamp("2025-01-06T09:00:00Z")
    created = [t0 + pd.Timedelta(minutes=20 * i) for i in range(n)]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    now = store.now()
    verdict = [(c + pd.Timedelta(days=40)).to_pydatetime() for c in created]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(db.leads),
            [
                {"lead_id": i, "created_at": c.to_pydatetime(), "attributes": {}, "updated_at": now}
                for i, c in zip(ids, created, strict=True)
            ],
        )
        store.insert_score_log(
            conn,
            [
                store.score_log_row(
                    score_entry(
                        ids[i],
                        (created[i] + pd.Timedelta(days=int(a))).to_pydatetime(),
                        probability=float(1 / (1 + np.exp(-z[i, k]))),
                        qualified=bool(handed[i, k]),
                        features={"x": float(z[i, k])},
                        propensity=1.0 if above[i, k] else share,
                        explored=bool(handed[i, k] and not above[i, k]),
                    )
                )
                for i in range(n)
                for k, a in enumerate(ages)
            ],
        )
        conn.execute(
            sa.insert(db.feedback),
            [
                {
                    "lead_id": ids[i],
                    "outcome": "qualified" if good[i] else "disqualified",
                    "reason": None if good[i] else "other",
                    "at": verdict[i],
                    "received_at": now,
                    "source": "api",
                    "idempotency_key": f"sim:{ids[i]}",
                }
                for i in np.flatnonzero(handed.any(axis=1))
            ],
        )
    # when the store is exported and read back, and training builds its rows at the moments the service
    # scored (the definition's ages are the scoring ages)
    definition = QualifiedDefinition(
        horizon_days=60, ages_days=tuple(ages), at_handoff=False, age_sampling="fixed"
    )
    dataset = load_dataset(write_dataset(store_dataset(engine, t0 + pd.Timedelta(days=200)), tmp_path / "x"))
    engine.dispose()
    rows = training_rows(dataset, definition)
    weighted, se = _weighted_rate(rows, label_weights(rows, TrainConfig.max_weight))
    # then the truth, every scored moment with its full label (sales judging every lead), is recovered
    everyone = pd.DataFrame(
        {
            S.LEAD_ID: ids,
            S.OUTCOME: np.where(good, "qualified", "disqualified"),
            S.OUTCOME_AT: pd.to_datetime(pd.Series(verdict), utc=True),
        }
    )
    full = training_rows(
        with_feedback(replace(dataset, outcomes=dataset.outcomes.iloc[:0], selection=None), everyone),
        definition,
    )
    assert len(full) == n * len(ages)
    truth = full["label"].mean()
    assert abs(weighted - truth) < 3 * se, (weighted, truth, se)
    # and the labelled rows are exactly the hand-overs, each weighted by its own propensity
    assert len(rows) == handed.sum() and set(rows["moment"]) == {"policy_handoff"}
    # while weighting every row of a handed-over lead by its first hand-over's propensity (the rule before:
    # the rows before a later hand-over got a label only because of what came after them) overstates it
    first = np.argmax(handed, axis=1)
    first_propensity = np.where(above[np.arange(n), first], 1.0, share)
    ever = handed.any(axis=1)
    old = full[full[S.LEAD_ID].isin(ids[ever])]
    old_w = old[S.LEAD_ID].map(pd.Series(1 / first_propensity[ever], index=ids[ever])).to_numpy()
    old_rate, old_se = _weighted_rate(old, old_w)
    assert old_rate - truth > 5 * max(se, old_se), (old_rate, truth)
