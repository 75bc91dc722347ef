"""`leadscore rescore`: score stored leads again with the champion, in bulk, so time decay and a new
champion reach the score log, the sales page and the handoff events (docs/retraining.md, "Fresh scores")."""

from __future__ import annotations

from typing import Annotated

import typer

from leadscore.cli.common import FAILED, console, fail, progress_line, setup_mlflow

CHUNK = 5000  # leads read, scored and written per transaction


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
) -> None:
    """Score stored leads again, as of now, with the champion, and write the scores as the service does
    (score log, lead state, handoff events for leads that cross the threshold). Exit 0 when done, 2 on
    wrong options, 1 when the model or the store cannot be used."""
    if all_leads and active_days is not None:
        fail("give --all or --active-days, not both")
    if active_days is not None and not 0 < active_days <= 3650:
        fail(f"--active-days: must be more than 0 and at most 3650, not {active_days:g}")

    from datetime import timedelta

    from leadscore.model.registry import load_scoring_model
    from leadscore.serve import db, store
    from leadscore.serve.scoring import score_log_rows
    from leadscore.serve.store import write_scores
    from leadscore.settings import get_settings

    settings = get_settings()
    uri = model or settings.model_uri
    days = None if all_leads else (active_days if active_days is not None else settings.rescore_active_days)
    setup_mlflow()
    with progress_line() as progress:
        task = progress.add_task(f"loading model {uri}", total=None)
        try:
            scoring_model = load_scoring_model(uri)
        except Exception as e:  # noqa: BLE001 - MLflow raises many types; the message is what matters
            progress.stop()
            console.print(
                f"[bold red]error:[/] cannot load the model {uri}: {type(e).__name__}: {str(e)[:300]}"
            )
            raise typer.Exit(code=FAILED) from None
        version = scoring_model.version
        exploration = settings.exploration()
        try:
            db.migrate(settings.database_url)
            engine = db.make_engine(settings.database_url)
        except Exception as e:  # noqa: BLE001 - a scheduler needs exit 1 and a reason, not a traceback
            progress.stop()
            console.print(f"[bold red]error:[/] cannot open the store: {type(e).__name__}: {str(e)[:300]}")
            raise typer.Exit(code=FAILED) from None
        done = handed = 0
        try:
            since = None if days is None else store.now() - timedelta(days=days)
            total = store.count_leads(engine, since)
            progress.update(task, description="rescoring leads", total=total, completed=0)
            for leads in store.iter_leads(engine, CHUNK, since, settings.max_events_per_lead):
                scored_at = store.now()
                scored = scoring_model.score(leads, scored_at, exploration=exploration)
                rows = [store.score_log_row(r) for r in score_log_rows(scored, scored_at, version)]
                with engine.begin() as conn:  # a chunk is written whole or not at all
                    write_scores(conn, rows)
                done += len(rows)
                handed += sum(r["qualified"] for r in scored.results)
                progress.update(task, completed=done)
        except Exception as e:  # noqa: BLE001 - what was written stays written; say how far it got
            progress.stop()
            console.print(
                f"[bold red]error:[/] rescoring stopped after {done:,} leads: "
                f"{type(e).__name__}: {str(e)[:300]}"
            )
            raise typer.Exit(code=FAILED) from None
        finally:
            engine.dispose()
    which = "every stored lead" if days is None else f"leads with an event in the last {days:g} days"
    console.print(
        f"rescored {done:,} leads ({which}) with {scoring_model.name} version {version}: "
        f"{handed:,} handed over"
    )
