"""`leadscore monitor`: is the champion still right? Calibration on the leads whose outcome is now known,
drift of the inputs and the score against training, volume and feedback coverage, from the service's store
(`serve.monitoring`; docs/monitoring.md). Exit codes: 0 no alert, 3 retrain recommended, 1 error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import sqlalchemy as sa
import typer

from leadscore.cli.common import console, duration_days, setup_mlflow, utc_moment

RETRAIN_RECOMMENDED, FAILED = 3, 1
_STYLE = {"ok": "green", "warn": "yellow", "alert": "bold red"}


def _error(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=FAILED)


def window_days(text: str) -> float:
    """ "30d", "2w", "36h" or a plain number of days, within the limit of `Settings.monitor_window_days`."""
    from leadscore.settings import Settings

    days = duration_days(text)
    if days is None:
        _error(f"--window: {text!r} is not a duration like 30d, 2w or 36h")
    limit = Settings.model_fields["monitor_window_days"].metadata
    most = min((c.le for c in limit if getattr(c, "le", None) is not None), default=float("inf"))
    if days > most:
        _error(f"--window: {text!r} is longer than {most:g} days")
    return days


def monitor(
    window: Annotated[
        str | None,
        typer.Option(help="The recent window: 30d, 2w, 36h (default: LEADSCORE_MONITOR_WINDOW_DAYS)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the HTML report (with plots) here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The service's store (default: LEADSCORE_DATABASE_URL).")
    ] = None,
    model_uri: Annotated[
        str | None, typer.Option(help="The model to judge (default: LEADSCORE_MODEL_URI, the champion).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Judge as at this moment (ISO-8601; default: now).")
    ] = None,
) -> None:
    """Is the champion still right? Calibration, input drift (PSI), volume and feedback coverage.

    Exit codes: 0 no alert (ok, warnings or not enough data), 3 an alert fired: retrain recommended
    (`leadscore retrain`, or `leadscore recalibrate` when only the base rate moved), 1 error.
    """
    from leadscore.model import registry
    from leadscore.retrain import RetrainError, open_store, shown_url
    from leadscore.serve.monitoring import monitor as run_monitor
    from leadscore.settings import get_settings

    settings = get_settings()
    url = database_url or settings.database_url
    days = window_days(window) if window else None
    moment = utc_moment(as_of).to_pydatetime() if as_of else None
    setup_mlflow()
    uri = model_uri or settings.model_uri
    try:
        model = registry.load_scoring_model(uri)
    except Exception as e:  # noqa: BLE001 - a registry or bundle error: the reason is what the user needs
        _error(f"cannot load the model {uri} ({type(e).__name__}: {str(e)[:300]})")
    try:
        engine = open_store(url)
    except RetrainError as e:
        _error(str(e))
    try:
        with console.status(f"reading the store {shown_url(url)}..."):
            report = run_monitor(engine, model, settings, now=moment, window_days=days)
    except sa.exc.SQLAlchemyError as e:  # unreachable, not migrated, no permission: say so, no traceback
        reason = str(getattr(e, "orig", None) or e).splitlines()[0][:300]
        _error(f"cannot read the store {shown_url(url)} ({type(e).__name__}: {reason})")
    finally:
        engine.dispose()
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1))
    if out:
        from leadscore.serve.monitoring.page import render

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(report))
    m = report["model"]
    console.print(
        f"model {m['name']} version {m['version']} at {report['now']}, last {report['window_days']:g} days"
    )
    for name, check in report["checks"].items():
        style = _STYLE.get(check["status"], "dim")
        console.print(f"  {name:<12} [{style}]{check['status']:<15}[/] {check.get('message', '')}")
    for path in (json_out, out):
        if path:
            console.print(f"wrote {path}")
    if report["retrain_recommended"]:
        console.print("[bold red]retrain recommended:[/] " + "; ".join(report["reasons"]))
        raise typer.Exit(code=RETRAIN_RECOMMENDED)
