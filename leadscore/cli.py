"""The `leadscore` command line."""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

app = typer.Typer(
    help="Leadscore: learn what a qualified lead is from sales feedback, score leads, say why.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _setup_mlflow() -> None:
    import mlflow

    from leadscore.settings import get_settings

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def _utc_moment(text: str):
    """`--as-of` as a UTC pandas Timestamp; a time without an offset is UTC."""
    import pandas as pd

    try:
        moment = pd.Timestamp(text)
    except ValueError:
        _fail(f"--as-of: not an ISO-8601 time: {text!r}")
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def duration_days(text: str) -> float | None:
    """ "30d", "2w", "36h" or a plain number of days, as days (> 0); None when `text` is not one."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        return None
    return float(m.group(1)) * {"h": 1 / 24, "d": 1, "w": 7, "": 1}[m.group(2)]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow's generic advice (cloudpickle of a python_model, integer output columns) is not actionable here
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")


@app.command("demo-data")
def demo_data(
    leads: Annotated[int, typer.Option(min=10, help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("data/demo"),
    drift: Annotated[
        bool,
        typer.Option(
            "--drift", help="Base-rate shift: from --drift-at on, about twice as many leads qualify."
        ),
    ] = False,
    drift_at: Annotated[
        str | None,
        typer.Option(
            help="When the shift starts (ISO-8601, UTC if no offset); implies --drift. [default: 2026-01-01]"
        ),
    ] = None,
) -> None:
    """Generate realistic demo CRM data (leads, events, outcomes) with its exact ground truth."""
    from leadscore.demo.generate import generate
    from leadscore.demo.params import DemoParams, DriftParams

    params = DemoParams()
    drift_at = drift_at or None  # MLproject passes "" for "not given"
    if drift or drift_at is not None:
        shift = DriftParams()
        if drift_at is not None:
            from datetime import UTC, datetime

            try:  # strict ISO-8601 (pandas would read "march" as a date)
                moment = datetime.fromisoformat(drift_at)
            except ValueError:
                _fail(f"--drift-at: not an ISO-8601 time: {drift_at!r}")
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            shift = DriftParams(at=moment.isoformat())
        params = DemoParams(drift=shift)
    with _progress() as progress:
        task = progress.add_task("generating leads", total=leads)
        info = generate(
            out,
            leads,
            seed=seed,
            params=params,
            progress=lambda done, total: progress.update(task, completed=done),
        )
    console.print(
        f"wrote {info.n_leads:,} leads, {info.n_events:,} events, {info.n_outcomes:,} outcomes to {out}"
    )


def _definition(horizon_days: int, ages: str | None, positive: str | None, negative: str | None):
    from leadscore.features.labels import QualifiedDefinition

    kw: dict = {"horizon_days": horizon_days}
    if ages:
        kw["ages_days"] = tuple(int(a) for a in ages.split(","))
    if positive:
        kw["positive"] = tuple(positive.split(","))
    if negative:
        kw["negative"] = tuple(negative.split(","))
    try:
        return QualifiedDefinition(**kw)
    except ValueError as e:
        _fail(str(e))


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Dataset directory (leads, events, outcomes).")],
    horizon_days: Annotated[int, typer.Option(min=1, help="Qualified within this many days.")] = 30,
    model: Annotated[str, typer.Option(help="auto | scorecard | boosted")] = "auto",
    policy: Annotated[str, typer.Option(help="Handoff policy: f1 | capacity | precision")] = "f1",
    target: Annotated[float | None, typer.Option(help="Leads per week (capacity) or precision.")] = None,
    ages: Annotated[str | None, typer.Option(help="As-of ages in days, e.g. 1,3,7,14,30,60")] = None,
    positive: Annotated[str | None, typer.Option(help="Positive outcomes, comma-separated.")] = None,
    negative: Annotated[str | None, typer.Option(help="Negative outcomes, comma-separated.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    metrics_out: Annotated[Path | None, typer.Option(help="Write metrics JSON here.")] = None,
    register: Annotated[bool, typer.Option(help="Register the model in the MLflow registry.")] = True,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing if a champion exists.")
    ] = False,
) -> None:
    """Train, evaluate and register a model from event data."""
    from leadscore.features.loading import DataError, load_dataset
    from leadscore.model import tracking
    from leadscore.model.train import NotEnoughData, TrainConfig
    from leadscore.model.train import train as run_train

    if model not in ("auto", "scorecard", "boosted"):
        _fail("--model must be auto, scorecard or boosted")
    if policy not in ("f1", "capacity", "precision"):
        _fail("--policy must be f1, capacity or precision")
    config = TrainConfig(
        definition=_definition(horizon_days, ages, positive, negative),
        model=model,
        policy=policy,
        policy_target=target,
        seed=seed,
    )
    _setup_mlflow()
    if if_missing:
        from leadscore.model import registry

        version = registry.alias_version(registry.CHAMPION)
        if version is not None:
            console.print(
                f"leadscore version {version} is champion already: not training (drop --if-missing to retrain)"
            )
            return
    with _progress() as progress:
        task = progress.add_task("loading data", total=None)
        try:
            dataset = load_dataset(data)
        except DataError as e:
            progress.stop()
            _fail(str(e))
        for note in dataset.notes:
            console.print(f"[yellow]note:[/] {note}")
        try:
            result = run_train(dataset, config, progress=lambda msg: progress.update(task, description=msg))
        except (NotEnoughData, ValueError) as e:
            progress.stop()
            _fail(str(e))
        for w in result.warnings:
            console.print(f"[yellow]warning:[/] {w}")
        for suspect in result.leakage["suspects"]:
            console.print(
                f"[yellow]leakage ({suspect['level']}):[/] {suspect['column']!r}: {suspect['reason']}"
            )
        if result.leakage["suspects"]:
            console.print(
                "  (train uses only the catalogue's point-in-time features: custom lead columns are "
                "audited and reported, never used)"
            )
        extra = {}
        if (Path(data) / "ground_truth").exists():
            progress.update(task, description="computing the oracle on the holdout rows")
            extra["oracle"] = _oracle_metrics(Path(data), result)
        progress.update(task, description="logging to MLflow and registering")
        tracked = tracking.track(
            result,
            dataset,
            config,
            holdout_values=result.holdout_values,
            extra_metrics=extra,
            leakage=result.leakage,
            register=register,
            data_source=str(data),
        )
        progress.update(task, description="done", total=1, completed=1)
    m = result.metrics
    console.print(
        f"[bold]{result.model.family}[/]: holdout ROC AUC {m['roc_auc']:.4f}, PR AUC {m['pr_auc']:.4f}, "
        f"Brier {m['brier']:.4f}, ECE {m['ece']:.4f} ({result.model.info['n_holdout']:,} rows)"
    )
    if "oracle" in extra:
        console.print(f"observable oracle ROC AUC on the same rows: {extra['oracle']['roc_auc']:.4f}")
    if tracked.version:
        console.print(f"registered leadscore version {tracked.version}: {tracked.decision.reason}")
    if metrics_out:
        out = {
            "holdout": m,
            **extra,
            "n_train": result.model.info["n_train"],
            "n_holdout": result.model.info["n_holdout"],
            "family": result.model.family,
            "candidates": result.candidates,
            "leakage": result.leakage,
            "run_id": tracked.run_id,
            "version": tracked.version,
            "promoted": bool(tracked.decision and tracked.decision.promote),
        }
        metrics_out.parent.mkdir(parents=True, exist_ok=True)
        metrics_out.write_text(json.dumps(out, indent=1))


def _oracle_metrics(data: Path, result) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from leadscore.demo.oracle import oracle_probabilities

    hold = result.rows[result.rows["part"] == "holdout"]
    # the oracle exact for training rows, hand-over rows included (docs/demo-data.md, "The oracle")
    o = oracle_probabilities(data, hold[["lead_id", "as_of"]], definition=result.model.definition)
    y = hold["label"].to_numpy()
    ok = o["training"].notna().to_numpy()
    out = {"roc_auc": float(roc_auc_score(y[ok], o["training"].to_numpy()[ok])), "n": int(ok.sum())}
    if o["hidden"].notna().all():
        out["hidden_roc_auc"] = float(roc_auc_score(y, o["hidden"].to_numpy()))
    out["model_roc_auc_same_rows"] = float(roc_auc_score(y[ok], np.asarray(result.holdout_p)[ok]))
    return out


@app.command()
def features(
    data: Annotated[Path, typer.Option(help="Dataset directory.")],
    as_of: Annotated[str, typer.Option("--as-of", help="ISO-8601 moment; naive times are UTC.")],
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")],
) -> None:
    """Write every lead's features as of one moment (only data stamped strictly before it is used)."""
    import pandas as pd

    from leadscore.features import schema as S
    from leadscore.features.frames import feature_frame
    from leadscore.features.loading import DataError, load_dataset

    moment = _utc_moment(as_of)
    try:
        dataset = load_dataset(data)
    except DataError as e:
        _fail(str(e))
    leads = dataset.leads[dataset.leads[S.CREATED_AT] < moment]
    rows = pd.DataFrame(
        {
            S.LEAD_ID: leads[S.LEAD_ID].to_numpy(),
            "as_of": pd.Series(moment, index=range(len(leads))).astype("datetime64[ms, UTC]"),
        }
    )
    with _progress() as progress:
        task = progress.add_task("computing features", total=len(rows))
        table = feature_frame(dataset, rows, progress=lambda n: progress.advance(task, n))
    table.insert(0, "as_of", rows["as_of"].to_numpy())
    table.insert(0, S.LEAD_ID, rows[S.LEAD_ID].to_numpy())
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False) if out.suffix == ".csv" else table.to_parquet(out, index=False)
    console.print(f"wrote features of {len(table):,} leads as of {moment.isoformat()} to {out}")


@app.command()
def promote(version: Annotated[str, typer.Option(help="Model version to make champion.")]) -> None:
    """Make a registered version the champion (the service picks it up on its next check)."""
    from leadscore.model import registry

    _setup_mlflow()
    try:
        registry.promote(version, reason="manual promotion from the command line")
    except Exception as e:  # noqa: BLE001 - MLflow raises its own types; the message is what matters
        _fail(f"cannot promote version {version}: {e}")
    console.print(f"leadscore version {version} is champion")


@app.command()
def rollback() -> None:
    """Restore the champion that the current champion replaced."""
    from leadscore.model import registry

    _setup_mlflow()
    try:
        v = registry.rollback()
    except ValueError as e:
        _fail(str(e))
    console.print(f"leadscore version {v} is champion again")


@app.command()
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


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (one per core is a good start).")] = 1,
) -> None:
    """Serve the scoring API and the sales page."""
    import uvicorn

    from leadscore.settings import get_settings

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
        limit_concurrency=get_settings().max_connections,
        log_level="info",
        access_log=False,
        server_header=False,
        timeout_worker_healthcheck=120,
    )  # workers import MLflow + the model: slow on a loaded host


@app.command()
def prune(
    days: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Delete score-log rows older than this many days (default: LEADSCORE_SCORE_LOG_RETENTION_DAYS; "
            "0 keeps everything).",
        ),
    ] = None,
) -> None:
    """Delete old score-log rows now, in short steps (the service also does this by itself, every 10
    minutes). Feedback, leads and events are never deleted."""
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
    finally:
        engine.dispose()
    console.print(f"deleted {n} score-log rows older than {days:g} days")


# Commands that live in their own modules register themselves on `app` when imported.
from leadscore import (  # noqa: E402,F401
    cli_export,
    cli_import,
    cli_monitor,
    cli_recalibrate,
    cli_retrain,
    cli_score,
    cli_table,
)
