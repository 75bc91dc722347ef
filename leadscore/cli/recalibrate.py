"""`leadscore recalibrate`: refit only the champion's calibration and handoff policy on the newest labelled
window, register it, promote it if it is better calibrated on a later slice. Same data sources, lock and exit
codes as `leadscore retrain` (docs/retraining.md, "Recalibrating")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leadscore.cli.common import (
    FAILED,
    KEPT,
    console,
    duration_days,
    gate_verdict,
    run_job,
    setup_mlflow,
    stop,
    utc_moment,
)


def _days(text: str) -> int:
    """`90d`, `12w` or `90` (days) as whole days."""
    days = duration_days(text or "")
    if days is None or days < 1 or not days.is_integer():
        stop(FAILED, f"--window: {text!r} is not a number of days such as 90d or 12w")
    return int(days)


def recalibrate(
    window: Annotated[
        str,
        typer.Option(
            help="The newest labelled window to recalibrate on, e.g. 90d or 12w (its newest third judges)."
        ),
    ] = "90d",
    export: Annotated[
        str | None,
        typer.Option(
            help="A CRM export directory, with the store's feedback merged (default: the store alone)."
        ),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The service's store (default: LEADSCORE_DATABASE_URL).")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="The store as it was at this moment (ISO-8601; default: now)."),
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Refit the champion's calibration and handoff policy on recent data; promote if better calibrated.

    Exit codes: 0 promoted, 3 kept the champion (not better calibrated beyond noise, or this data is already
    recalibrated), 4 not enough data in the window, 1 any other error (nothing registered).
    """
    from leadscore.recalibrate import RecalibrateOptions
    from leadscore.recalibrate import recalibrate as run_recalibrate
    from leadscore.retrain import shown_url
    from leadscore.settings import get_settings

    export, database_url, as_of = (v or None for v in (export, database_url, as_of))
    days = _days(window)
    url = database_url or get_settings().database_url
    moment = utc_moment(as_of).to_pydatetime() if as_of else None
    setup_mlflow()
    options = RecalibrateOptions(
        database_url=url, export=Path(export) if export else None, window_days=days, as_of=moment, seed=seed
    )
    console.print(
        f"recalibrating the champion on the last {days} labelled days of "
        f"{'the export ' + str(export) + ' and ' if export else ''}the store {shown_url(url)}"
    )
    out = run_job(run_recalibrate, options)
    for note in out.notes:
        console.print(f"  {note}")
    if out.status == "unchanged":
        if out.version == out.champion_before:
            console.print(
                f"[bold yellow]kept the champion:[/] the champion, version {out.version}, is already a "
                f"recalibration on this data with a {days}-day window: nothing to do"
            )
        else:
            console.print(
                f"[bold yellow]kept the champion:[/] version {out.version} already recalibrated champion "
                f"version {out.champion_before} on this data with a {days}-day window (its gate kept "
                "the champion): nothing to do"
            )
        raise typer.Exit(code=KEPT)
    r, d = out.report, out.decision
    assert d is not None  # every outcome but "unchanged" carries the gate's decision
    console.print(
        f"window {r['window_from'][:10]} .. {r['window_to'][:10]}: {r['n_fit']:,} rows to fit "
        f"(positive {r['positive_rate_fit']:.1%}), {r['n_judge']:,} newest rows to judge (positive "
        f"{r['positive_rate_judge']:.1%}; the champion's training rows: {r['champion_positive_rate']:.1%})"
    )
    console.print(
        f"on the newest rows the champion said {r['mean_p_old_judge']:.1%} on average (ECE "
        f"{r['ece_old']:.4f}), the recalibrated model {r['mean_p_new_judge']:.1%} (ECE {r['ece_new']:.4f}); "
        f"handoff threshold {r['threshold_old']:.3f} -> {r['threshold_new']:.3f}"
    )
    if out.version is None:
        console.print(
            f"[bold yellow]kept the champion[/] version {out.champion_before} (rule {d.rule}): {d.reason}; "
            "nothing was registered"
        )
        raise typer.Exit(code=KEPT)
    console.print(
        f"registered leadscore version {out.version} (run {out.run_id}), recalibrated from version "
        f"{out.champion_before}"
    )
    gate_verdict(out.status == "promoted", out.version, out.champion_before, d)
