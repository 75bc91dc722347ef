"""What every command shares: the console (stderr), the progress line, MLflow set-up, how a command fails,
the `--as-of` and `--window` parsers, the summary of a training run (`train`, `table`), and the exit codes
and runner of the model-changing jobs (retrain and recalibrate). Imports nothing from the command modules:
they import from here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

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

if TYPE_CHECKING:
    import pandas as pd

    from leadscore.features.loading import Dataset
    from leadscore.model.gate import GateDecision
    from leadscore.model.scoring import ScoringModel
    from leadscore.model.tracking import TrackedRun
    from leadscore.model.train import TrainResult

console = Console(stderr=True)

# the exit codes of `retrain` and `recalibrate` other than 0 (promoted), for schedulers (docs/retraining.md)
KEPT, NOT_ENOUGH_DATA, FAILED = 3, 4, 1

Options = TypeVar("Options")
Outcome = TypeVar("Outcome")


def progress_line() -> Progress:
    """A progress line on stderr that stays on screen when done."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def setup_mlflow() -> None:
    """Point MLflow at the tracking server of the settings (LEADSCORE_MLFLOW_TRACKING_URI)."""
    import mlflow

    from leadscore.settings import get_settings

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)


def load_data(data: Path, progress: Progress) -> Dataset:
    """The dataset at `data` (`features.loading.load_dataset`) with its notes printed; bad data stops the
    progress line and exits 2 naming what is wrong."""
    from leadscore.features.loading import load_dataset
    from leadscore.features.problems import DataError

    try:
        dataset = load_dataset(data)
    except DataError as e:
        progress.stop()
        fail(str(e))
    for note in dataset.notes:
        console.print(f"[yellow]note:[/] {note}")
    return dataset


def load_model(uri: str, progress: Progress, code: int = 2, what: str = "--model") -> ScoringModel:
    """The model at `uri` (`model.registry.load_scoring_model`), shown on the progress line; when it cannot be
    loaded, the progress line stops and the command exits with `code`, naming `what` and why (2: `--model`
    was given wrong; FAILED: a scheduled job's configured model)."""
    from leadscore.model.registry import load_scoring_model

    progress.update(progress.task_ids[-1], description=f"loading model {uri}")
    try:
        return load_scoring_model(uri)
    except Exception as e:  # noqa: BLE001 - MLflow raises many types; the message is what matters
        progress.stop()
        console.print(f"[bold red]error:[/] {what}: cannot load {uri}: {type(e).__name__}: {str(e)[:300]}")
        raise typer.Exit(code=code) from None


def fail(message: str) -> NoReturn:
    """Say what is wrong with the command's input and exit 2 (typer's code for a usage error)."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def utc_moment(text: str) -> pd.Timestamp:
    """`--as-of` as a UTC pandas Timestamp; a time without an offset is UTC."""
    import pandas as pd

    try:
        moment = pd.Timestamp(text)
    except ValueError:
        fail(f"--as-of: not an ISO-8601 time: {text!r}")
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def duration_days(text: str) -> float | None:
    """ "30d", "2w", "36h" or a plain number of days, as days (> 0); None when `text` is not one."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        return None
    return float(m.group(1)) * {"h": 1 / 24, "d": 1, "w": 7, "": 1}[m.group(2)]


def training_summary(
    result: TrainResult,
    tracked: TrackedRun,
    model_name: str,
    metrics_out: Path | None,
    *,
    detail: str = "",
    lines: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> None:
    """Print a training run's holdout metrics (`detail` added in their parentheses, then `lines`) and, when
    a version was registered, the gate's reason; write the run's figures to `metrics_out` as JSON, `extra`
    besides the ones every training command reports."""
    m, info = result.metrics, result.model.info
    console.print(
        f"[bold]{result.model.family}[/]: holdout ROC AUC {m['roc_auc']:.4f}, PR AUC {m['pr_auc']:.4f}, "
        f"Brier {m['brier']:.4f}, ECE {m['ece']:.4f} ({info['n_holdout']:,} rows{detail})"
    )
    for line in lines:
        console.print(line)
    if tracked.version and tracked.decision:
        console.print(f"registered {model_name} version {tracked.version}: {tracked.decision.reason}")
    if metrics_out:
        out = {
            "holdout": m,
            "n_train": info["n_train"],
            "n_holdout": info["n_holdout"],
            "family": result.model.family,
            "candidates": result.candidates,
            "run_id": tracked.run_id,
            "version": tracked.version,
            "promoted": bool(tracked.decision and tracked.decision.promote),
            **(extra or {}),
        }
        metrics_out.parent.mkdir(parents=True, exist_ok=True)
        metrics_out.write_text(json.dumps(out, indent=1))


def stop(code: int, message: str) -> NoReturn:
    """Say why a job stops before registering anything, and exit with `code` (FAILED or NOT_ENOUGH_DATA)."""
    label = "[bold red]error:[/]" if code == FAILED else "[bold yellow]not enough data:[/]"
    console.print(f"{label} {message}")
    console.print("nothing was registered and no alias changed")
    raise typer.Exit(code=code)


def gate_verdict(promoted: bool, version: str | None, champion: str | None, d: GateDecision) -> None:
    """Print the gate's verdict on a registered challenger; exit KEPT (3) when the champion stays."""
    if promoted:
        console.print(f"[bold green]promoted[/] version {version} to champion (rule {d.rule}): {d.reason}")
        return
    console.print(
        f"[bold yellow]kept the champion[/] version {champion} (rule {d.rule}): {d.reason}; "
        f"version {version} stays challenger"
    )
    raise typer.Exit(code=KEPT)


def run_job(run: Callable[..., Outcome], options: Options) -> Outcome:
    """`run(options, progress=...)` (retrain or recalibrate) under a progress line; a run that stops before
    registering anything says why and exits 4 (not enough data) or 1 (anything else), never a traceback."""
    from leadscore.features.problems import DataError
    from leadscore.model.training_data import NotEnoughData
    from leadscore.retrain import RetrainError
    from leadscore.serve.locks import LockHeld

    with progress_line() as progress:
        task = progress.add_task("starting", total=None)
        try:
            out = run(options, progress=lambda msg: progress.update(task, description=msg))
        except LockHeld as e:
            progress.stop()
            stop(
                FAILED,
                f"{e}; this run does nothing. (A lock whose heartbeat stops is taken over after "
                f"{e.stale_after:.0f} s.)",
            )
        except NotEnoughData as e:
            progress.stop()
            stop(NOT_ENOUGH_DATA, str(e))
        except (DataError, RetrainError) as e:
            progress.stop()
            stop(FAILED, str(e))
        except Exception as e:  # noqa: BLE001 - a scheduler needs exit 1 and a reason, not a traceback
            progress.stop()
            stop(FAILED, f"{type(e).__name__}: {str(e)[:500]}")
        progress.update(task, description="done", total=1, completed=1)
    return out
