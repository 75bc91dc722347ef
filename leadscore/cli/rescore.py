"""`leadscore rescore`: score stored leads again with the champion, in bulk, so time decay and a new
champion reach the score log, the sales page and the handoff events (docs/retraining.md, "Fresh scores")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadscore.cli.common import FAILED, console, fail, load_model, progress_line, setup_mlflow

if TYPE_CHECKING:  # imported when used: `leadscore --help` stays fast
    from leadscore.serve.store import LeadRange

CHUNK = 25_000  # leads read, scored and written per transaction (~0.6 GB of temporaries at 50 events a lead)
# the first range's leads: nothing can be written before it is scored, so it is smaller (the writer starts
# sooner, then keeps up with the workers)
HEAD = 5_000
# The collector's first threshold, for this command's process and its workers (default 700): a range makes
# millions of tuples, dicts and strings that live until written (reasons, rows, states), and the collector
# passed over them (and the model) ~3,400 times per 100k leads, 1.3-1.4 s of 12 s CPU; with 100,000 (and the
# objects of the loaded model frozen) it is ~0.1 s, at the same peak memory (one pass in ~100,000 objects
# still collects the cycles of a range's frames).
GC_THRESHOLD = 100_000


def default_workers() -> int:
    """One worker process per core this process may run on."""
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def score_frames(model, leads, events, as_of, exploration):
    """Stored leads (the frames of `store.lead_frames`) scored as of `as_of` as `ScoringModel.score`
    scores them, with the batch feature path (`features.frames`, equal to the live one by construction:
    tests/features/test_batch_vs_single.py): the events go into arrays column by column, not through one
    dict per event (at 1M leads and 30M events, the dicts were most of the time)."""
    import pandas as pd

    from leadscore.features import schema as S
    from leadscore.features.frames import iter_feature_chunks
    from leadscore.features.loading import Dataset
    from leadscore.model.scoring import Scored

    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in ("lead_id", "outcome", "at", "reason")})
    dataset = Dataset(leads, events, empty, pd.Timestamp(as_of))
    rows = pd.DataFrame({S.LEAD_ID: leads[S.LEAD_ID], "as_of": pd.Timestamp(as_of)})
    ((pos, values),) = iter_feature_chunks(dataset, rows, chunk_leads=max(1, len(leads)))
    ids = leads[S.LEAD_ID].to_numpy(dtype=object)[pos].tolist()
    results = model.results(values, ids, exploration=exploration, out_of_range=False, reason_fields=True)
    return Scored(results, [as_of] * len(ids), values, model.encoder.features)


@contextmanager
def _fewer_collections() -> Iterator[Callable[[], None]]:
    """`GC_THRESHOLD` while the command runs, and a function that freezes what is loaded by then; then the
    collector as it was (the command also runs inside other processes: tests, a scheduler's Python). Only a
    process that had nothing frozen freezes and is unfrozen here: `gc.unfreeze` gives back every frozen
    object, and a host's own (a server's model, `serve.model_holder`) must stay out of the collector's way."""
    import gc

    before = gc.get_threshold()
    ours = gc.get_freeze_count() == 0
    gc.set_threshold(GC_THRESHOLD)
    try:
        yield gc.freeze if ours else lambda: None
    finally:
        if ours:
            gc.unfreeze()
        gc.set_threshold(*before)


class _Job:
    """What every worker shares: the model, the store's URL, the options. Set in the parent before the
    workers are forked, so they inherit the loaded (and compiled) model instead of loading it again."""

    model: Any = None
    database_url = ""
    version: str | None = None
    exploration: Any = None
    since: datetime | None = None
    engine: Any = None  # each process's own (a connection pool does not survive a fork)


def score_range(bounds: LeadRange) -> tuple[list[tuple[Any, ...]], int]:
    """Read and score the stored leads of one id range (`store.lead_ranges`), in this process: (their
    score-log rows as `store.write_scores` takes them, leads handed over). Reading needs no lock (SQLite's
    WAL lets readers run beside the writer), so workers do this side by side."""
    from leadscore.serve import db, store
    from leadscore.serve.scoring import encoded_score_log_rows

    if _Job.engine is None:
        _Job.engine = db.make_engine(_Job.database_url)
    leads, events = store.lead_frames(_Job.engine, bounds.first, bounds.last, _Job.since)
    if leads.empty:
        return [], 0
    scored_at = store.now()
    scored = score_frames(_Job.model, leads, events, scored_at, _Job.exploration)
    rows = encoded_score_log_rows(scored, scored_at, _Job.version)
    return rows, sum(r["qualified"] for r in scored.results)


def write_range(engine, rows: list[tuple[Any, ...]]) -> None:
    """Write one range's scores in one transaction: written whole or not at all."""
    from leadscore.serve import store

    with engine.begin() as conn:
        store.write_scores(conn, rows)


def _close_engine() -> None:
    if _Job.engine is not None:
        _Job.engine.dispose()
        _Job.engine = None


def rescore(
    all_leads: Annotated[
        bool, typer.Option("--all", help="Every stored lead, not only those with recent events.")
    ] = False,
    active_days: Annotated[
        float | None,
        typer.Option(
            "--active-days",
            help="Only leads with an event in the last N days. [default: LEADSCORE_RESCORE_ACTIVE_DAYS, 90]",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="MLflow model URI. [default: LEADSCORE_MODEL_URI, the champion]")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes that read, score and write lead ranges at once. [default: one per core]",
        ),
    ] = None,
) -> None:
    """Score stored leads again, as of now, with the champion, and write the scores as the service does
    (score log, lead state, handoff events for leads that cross the threshold). Exit 0 when done, 2 on
    wrong options, 1 when the model or the store cannot be used."""
    if all_leads and active_days is not None:
        fail("give --all or --active-days, not both")
    if active_days is not None and not 0 < active_days <= 3650:
        fail(f"--active-days: must be more than 0 and at most 3650, not {active_days:g}")
    if workers is not None and not 1 <= workers <= 64:
        fail(f"--workers: must be from 1 to 64, not {workers}")

    from datetime import timedelta

    from leadscore.serve import db, store
    from leadscore.serve.store.score_log_rows import feature_set_id
    from leadscore.settings import get_settings

    settings = get_settings()
    uri = model or settings.model_uri
    days = None if all_leads else (active_days if active_days is not None else settings.rescore_active_days)
    setup_mlflow()
    with progress_line() as progress, _fewer_collections() as freeze:
        task = progress.add_task(f"loading model {uri}", total=None)
        scoring_model = load_model(uri, progress, FAILED, what="the model")
        version = scoring_model.version
        exploration = settings.exploration()
        try:
            db.migrate(settings.database_url)
            engine = db.make_engine(settings.database_url)
        except Exception as e:  # noqa: BLE001 - a scheduler needs exit 1 and a reason, not a traceback
            progress.stop()
            console.print(f"[bold red]error:[/] cannot open the store: {type(e).__name__}: {str(e)[:300]}")
            raise typer.Exit(code=FAILED) from None
        if scoring_model.info.get("input") == "flat":
            progress.stop()
            fail(
                f"{uri} was trained on a flat export (leadscore table): it scores export rows, "
                "not stored leads"
            )
        done = handed = 0
        n_workers = workers or default_workers()
        try:
            since = None if days is None else store.now() - timedelta(days=days)
            ranges = store.lead_ranges(engine, CHUNK, since, head=HEAD)
            total = sum(r.leads for r in ranges)
            engine.dispose()  # before the fork: the workers open their own connections
            _Job.model, _Job.database_url, _Job.version = scoring_model, settings.database_url, version
            _Job.exploration, _Job.since = exploration, since
            # the rows name their feature set by id; this process writes them, so it must know the names
            feature_set_id(tuple(scoring_model.encoder.features))
            # what is loaded by now (modules, the model) lives to the end: out of the collector's passes,
            # which also leaves its memory pages shared with the forked workers (no copy on write)
            freeze()
            progress.update(task, description="rescoring leads", total=total, completed=0)
            # closed on any error: the worker pool stops now, not when the generator is collected
            with closing(_scored_ranges(ranges, min(n_workers, len(ranges)))) as scored:
                for rows, h in scored:
                    write_range(engine, rows)
                    done, handed = done + len(rows), handed + h
                    progress.update(task, completed=done)
        except Exception as e:  # noqa: BLE001 - what was written stays written; say how far it got
            progress.stop()
            console.print(
                f"[bold red]error:[/] rescoring stopped after {done:,} leads: "
                f"{type(e).__name__}: {str(e)[:300]}"
            )
            raise typer.Exit(code=FAILED) from None
        finally:
            _close_engine()
            engine.dispose()
    which = "every stored lead" if days is None else f"leads with an event in the last {days:g} days"
    console.print(
        f"rescored {done:,} leads ({which}) with {scoring_model.name} version {version}: "
        f"{handed:,} handed over"
    )


def _scored_ranges(ranges: list[LeadRange], workers: int):
    """`score_range` of every range, as each finishes: in this process with one worker, else in `workers`
    forked processes (the scoring is CPU-bound Python), while this process writes what they give it.

    One writer: SQLite takes one write transaction at a time, and workers that each wrote their own range
    waited for the lock with their core idle (SQLite polls for it, up to 100 ms late); here a worker goes on
    to its next range while this process writes the last one. At most `workers + 1` ranges are in flight,
    so scored ranges never pile up in memory when the writes are the slower side. A worker's error stops
    the run; ranges already written stay written."""
    if workers <= 1:
        yield from map(score_range, ranges)
        return
    import multiprocessing
    import queue

    done: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    todo = iter(ranges)
    with multiprocessing.get_context("fork").Pool(workers) as pool:

        def submit() -> bool:
            bounds = next(todo, None)
            if bounds is not None:
                pool.apply_async(
                    score_range,
                    (bounds,),
                    callback=lambda r: done.put((True, r)),
                    error_callback=lambda e: done.put((False, e)),
                )
            return bounds is not None

        in_flight = sum(submit() for _ in range(workers + 1))
        while in_flight:
            ok, got = done.get()
            if not ok:
                raise got
            in_flight += submit() - 1
            yield got
