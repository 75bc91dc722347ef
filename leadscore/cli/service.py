"""`leadscore serve`, `leadscore keys` and `leadscore prune`: run the service and look after it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from leadscore.cli.common import console, fail


def keys(
    file: Annotated[Path, typer.Option(help="Where to keep generated keys.")] = Path(".leadscore/keys.env"),
    show: Annotated[bool, typer.Option(help="Print the keys.")] = True,
) -> None:
    """Create one API key per role in FILE (readable only by you) unless it exists; print them."""
    from leadscore.serve.keys import ensure_keys_file

    created, text = ensure_keys_file(file)
    if created:
        console.print(f"generated API keys in {file} (mode 600)")
    if show:
        for pair in text.split(","):
            role, _, key = pair.partition(":")
            typer.echo(f"  {role:<7} {key}")


def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (one per core is a good start).")] = 1,
) -> None:
    """Serve the scoring API and the sales page."""
    import uvicorn
    from pydantic import ValidationError

    from leadscore.settings import get_settings

    try:  # a refused setting stops the start with its message (values never shown), not a traceback
        settings = get_settings()
    except ValidationError as e:
        fail("; ".join(setting_error(err) for err in e.errors()))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # glibc gives threads that allocate at once their own heap arenas (up to 8 per core), whose freed memory
    # is rarely given back; two bound what big requests on the thread pool can spread over (the soak figures
    # in docs/benchmarks.md are with it; its effect alone is not measured)
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    uvicorn.run(
        "leadscore.serve.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http="httptools",  # uvicorn's C parser and uvloop's event loop: its fastest stock parts
        loop="uvloop",
        # the last line of defence against a flood of connections (file descriptors, memory); the
        # app's own bounds (serve/admission.py) answer long before this with a JSON 503 and Retry-After
        limit_concurrency=settings.max_connections,
        log_level="info",
        access_log=False,
        server_header=False,
        timeout_worker_healthcheck=120,
    )  # workers import MLflow + the model: slow on a loaded host


def setting_error(err: Any) -> str:
    """One refused setting in words: the variable, then pydantic's reason (ours name the variable)."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"] or msg.startswith("LEADSCORE_"):
        return msg
    return f"LEADSCORE_{str(err['loc'][0]).upper()}: {msg}"


def prune(
    days: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Delete score-log rows older than this many days "
            "(default: LEADSCORE_SCORE_LOG_RETENTION_DAYS; "
            "0 keeps everything).",
        ),
    ] = None,
) -> None:
    """Delete old score-log rows and delivered or dead handoff events now, in short steps (the service also
    does this by itself, every 10 minutes). Feedback, leads and events are never deleted."""
    from leadscore.serve import db, store
    from leadscore.settings import get_settings

    settings = get_settings()
    days = settings.score_log_retention_days if days is None else days
    if days <= 0:
        console.print("retention is off (0 days): nothing deleted")
        return
    db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    try:
        n = store.prune_all(engine, days)
        events = store.prune_outbox_all(engine, days, settings.webhook_max_age_hours)
    finally:
        engine.dispose()
    console.print(f"deleted {n} score-log rows older than {days:g} days")
    console.print(f"deleted {events} delivered or dead handoff events older than {days:g} days")
