"""`leadscore retrain`: train a challenger like the champion from the store (or an export with the store's
feedback), gate it, register it, promote it if it passes. Made for schedulers: the exit code says what
happened (docs/retraining.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from leadscore.cli.common import FAILED, KEPT, console, gate_verdict, run_job, setup_mlflow, stop, utc_moment


def retrain(
    export: Annotated[
        str | None,
        typer.Option(
            help="Train on this CRM export directory, with the store's feedback merged "
            "(default: the store alone)."
        ),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The service's store (default: LEADSCORE_DATABASE_URL).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="auto | scorecard | boosted (default: the champion's family; auto with no champion)."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Train on the store as it was at this moment (ISO-8601; default: now)."),
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Retrain from what sales said: train like the champion, gate, register, promote if better.

    Exit codes: 0 promoted, 3 kept the champion (the gate refused, or this data is already trained),
    4 not enough data, 1 any other error (nothing registered). One run at a time (a lock in the store).
    """
    from leadscore.model.train import ModelChoice
    from leadscore.retrain import RetrainOptions, shown_url
    from leadscore.retrain import retrain as run_retrain
    from leadscore.settings import get_settings

    # an empty value is the default (MLproject parameters and env-driven schedulers pass "" for "not given")
    export, database_url, model, as_of = (v or None for v in (export, database_url, model, as_of))
    if model not in (None, "auto", "scorecard", "boosted"):
        stop(FAILED, "--model must be auto, scorecard or boosted")
    url = database_url or get_settings().database_url
    moment = utc_moment(as_of).to_pydatetime() if as_of else None
    setup_mlflow()
    options = RetrainOptions(
        database_url=url,
        export=Path(export) if export else None,
        model=cast(ModelChoice | None, model),  # checked above
        as_of=moment,
        seed=seed,
    )
    console.print(
        f"retraining from {'the export ' + str(export) + ' and ' if export else ''}the store {shown_url(url)}"
    )
    out = run_job(run_retrain, options)
    for note in out.notes:
        console.print(f"  {note}")
    for w in out.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    fb = out.feedback
    console.print(
        f"data SHA-256 {out.fingerprint['sha256'][:12]}: {out.fingerprint['n_leads']:,} leads, "
        f"{out.fingerprint['n_events']:,} events, {out.fingerprint['n_outcomes']:,} outcomes; feedback: "
        f"{fb['verdicts']} verdicts ({fb['qualified']} qualified, {fb['disqualified']} disqualified), "
        f"{fb['won']} won, {fb['lost']} lost, on {fb['leads']} leads"
    )
    if out.status == "unchanged":
        console.print(
            f"[bold yellow]kept the champion:[/] version {out.version} was already trained on this data "
            f"with these settings (--model {out.config.model if out.config else 'auto'}): nothing to do"
        )
        raise typer.Exit(code=KEPT)
    m, d = out.metrics, out.decision
    assert d is not None  # every outcome but "unchanged" carries the gate's decision
    console.print(
        f"[bold]{out.family}[/]: holdout ROC AUC {m['roc_auc']:.4f}, ECE {m['ece']:.4f}; registered "
        f"leadscore version {out.version} (run {out.run_id})"
    )
    gate_verdict(out.status == "promoted", out.version, out.champion_before, d)
