"""`leadscore table`: train and evaluate on a flat one-row-per-lead export, after a leakage audit.

Reads the file (`leadscore.features.table`), audits it (`leadscore.features.leakage`), leaves out the certain
leaks (unless `--keep`), trains and evaluates like `leadscore train` (`fit_models`), logs to MLflow and
registers the model. See docs/flat-exports.md and docs/leakage.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, cast, get_args

import numpy as np
import pandas as pd
import typer

from leadscore.cli.common import console, fail, progress_line, setup_mlflow, training_summary
from leadscore.model.registry import FLAT_MODEL_NAME

HOLDOUT_FRACTION = 0.2
CONSTANT_AS_OF = pd.Timestamp("2000-01-01", tz="UTC")  # a snapshot has no time: one moment for every row


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded random `fraction` of each class."""
    rng = np.random.default_rng(seed)
    hold = np.zeros(len(y), dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        hold[rng.choice(idx, size=round(fraction * len(idx)), replace=False)] = True
    return hold


def ordered_holdout(n: int, fraction: float) -> np.ndarray:
    """The last `fraction` of the rows, in file order."""
    hold = np.zeros(n, dtype=bool)
    hold[n - round(fraction * n) :] = True
    return hold


def time_holdout(t: np.ndarray, fraction: float) -> np.ndarray:
    """The latest `fraction` of the rows by `t` (ties broken by file order)."""
    order = np.lexsort((np.arange(len(t)), t))
    hold = np.zeros(len(t), dtype=bool)
    hold[order[len(t) - round(fraction * len(t)) :]] = True
    return hold


def _time_column(table, column: str) -> pd.Series:
    """UTC timestamps of `column` (ISO-8601 text, or numbers taken as an ordering); problems raise
    DataError."""
    from leadscore.features.problems import DataError, Problem

    col = table.frame[column]
    kind = table.columns[column].kind
    if kind == "numeric":
        ts = pd.to_datetime(col.astype(float), unit="s", utc=True, errors="coerce")
    else:
        ts = pd.to_datetime(col, utc=True, format="ISO8601", errors="coerce")
    bad = np.flatnonzero(ts.isna().to_numpy())
    if len(bad):
        raise DataError(
            [
                Problem(
                    table.path,
                    int(table.row_numbers[i]),
                    column,
                    "missing time" if col.iloc[i] is None else f"not an ISO-8601 time: {col.iloc[i]!r}",
                )
                for i in bad[:20]
            ]
            + ([Problem(table.path, None, column, f"{len(bad)} bad times in all")] if len(bad) > 20 else [])
        )
    return ts.astype("datetime64[ms, UTC]")


def _example(table, features: list[str], holdout: np.ndarray, y: np.ndarray) -> dict:
    """A flat pyfunc input example: one positive holdout row with the columns the model reads."""
    pick = int(np.flatnonzero(holdout & (y == 1))[0]) if (holdout & (y == 1)).any() else 0
    row: dict[str, object] = {}
    if table.id_column:
        row[table.id_column] = str(table.lead_ids[pick])
    for f in features:
        v = table.frame[f].iloc[pick]
        row[f] = (
            (None if pd.isna(v) else float(v))
            if table.columns[f].kind == "numeric"
            else ("" if v is None else v)
        )
    return {"rows": [row]}


def _fingerprint(table) -> dict:
    h = hashlib.sha256(Path(table.path).read_bytes()).hexdigest()
    return {
        "file": table.path,
        "n_rows": int(len(table.label) + len(table.excluded_rows)),
        "n_labelled": len(table.label),
        "n_excluded_no_label": len(table.excluded_rows),
        "positive_rate": float(table.label.mean()),
        "label": table.label_column,
        "positive": table.positive,
        "columns": {c: info.to_dict() for c, info in table.columns.items()},
        "sha256": h,
    }


def table(
    file: Annotated[
        Path, typer.Argument(help="CSV (delimiter sniffed) or Parquet export, one row per lead.")
    ],
    label: Annotated[str, typer.Option(help="The outcome column.")],
    positive: Annotated[
        str | None, typer.Option(help="Label value counted as positive (default: 1/yes/true).")
    ] = None,
    id: Annotated[str | None, typer.Option("--id", help="Identifier column (never a feature).")] = None,
    drop: Annotated[list[str] | None, typer.Option(help="Column to leave out (repeatable).")] = None,
    keep: Annotated[list[str] | None, typer.Option(help="Suspected leak to use anyway (repeatable).")] = None,
    split: Annotated[str, typer.Option(help="Holdout: stratified | ordered | time:COLUMN")] = "stratified",
    missing: Annotated[
        list[str] | None, typer.Option(help="Missing-value marker (repeatable; replaces the default list).")
    ] = None,
    model: Annotated[str, typer.Option(help="auto | scorecard | boosted")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    metrics_out: Annotated[Path | None, typer.Option(help="Write metrics JSON here.")] = None,
    register: Annotated[bool, typer.Option(help="Register the model in the MLflow registry.")] = True,
) -> None:
    """Audit a flat CRM export for leaks, then train, evaluate and register a model on it."""
    from leadscore.features.cells import DEFAULT_MISSING
    from leadscore.features.leakage import audit_table, summary_lines
    from leadscore.features.problems import DataError
    from leadscore.features.table import read_table
    from leadscore.model import tracking
    from leadscore.model.train import ModelChoice, TrainConfig, fit_models
    from leadscore.model.training_data import NotEnoughData

    if model not in get_args(ModelChoice):
        fail("--model must be auto, scorecard or boosted")
    time_col = None
    if split.startswith("time:"):
        time_col = split.removeprefix("time:")
        if not time_col:
            fail("--split time:COLUMN needs a column name")
    elif split not in ("stratified", "ordered"):
        fail("--split must be stratified, ordered or time:COLUMN")
    drop, keep = list(drop or []), list(keep or [])
    try:
        tab = read_table(
            file,
            label,
            positive=positive,
            id_column=id,
            drop=drop,
            missing=tuple(missing) if missing else DEFAULT_MISSING,
        )
        if time_col is not None:
            if time_col not in tab.columns:
                fail(f"--split time:{time_col}: no such column in {file}")
            as_of = _time_column(tab, time_col)
    except DataError as e:
        fail(str(e))
    for note in tab.notes:
        console.print(f"[yellow]note:[/] {note}")
    unknown_keep = [k for k in keep if k not in tab.columns]
    if unknown_keep:
        fail(f"--keep names no column of {file}: {', '.join(map(repr, unknown_keep))}")
    y = tab.label.astype(int)
    config = TrainConfig(model=cast(ModelChoice, model), seed=seed, holdout_fraction=HOLDOUT_FRACTION)
    setup_mlflow()
    with progress_line() as progress:
        task = progress.add_task("auditing for leakage", total=None)
        report = audit_table(tab, keep=keep, seed=seed)
        progress.stop()
        for line in summary_lines(report):
            style = "[bold red]" if line.startswith("LEAK") else "[yellow]"
            console.print(f"{style}{line}[/]")
        progress.start()
        features = [c for c in tab.features if c not in report["excluded"] and c != time_col]
        if not features:
            progress.stop()
            fail("no feature column is left after identifiers, constants, --drop and the leakage audit")
        if time_col is None:
            as_of = pd.Series(CONSTANT_AS_OF, index=range(len(y))).astype("datetime64[ms, UTC]")
        if split == "stratified":
            holdout = stratified_holdout(y, HOLDOUT_FRACTION, seed)
        elif split == "ordered":
            holdout = ordered_holdout(len(y), HOLDOUT_FRACTION)
        else:
            holdout = time_holdout(
                as_of.to_numpy().astype("datetime64[ms]").astype(np.int64), HOLDOUT_FRACTION
            )
        # fit_models takes its calibration rows as the last `calibration_fraction` of the training rows by
        # (as_of, lead_id). For a stratified split the rows are exchangeable, so that order is a seeded
        # shuffle (not file order).
        order_ids = tab.lead_ids
        if split == "stratified":
            rank = np.random.default_rng(seed + 1).permutation(len(y))
            order_ids = np.array([f"{r:09d}" for r in rank], dtype=object)
        rows = pd.DataFrame({"lead_id": order_ids, "as_of": as_of.to_numpy(), "label": y})
        values = tab.values(features)
        categorical = tuple(f for f in features if tab.columns[f].kind == "categorical")
        try:
            result = fit_models(
                values,
                rows,
                holdout,
                categorical,
                config,
                step=lambda msg: progress.update(task, description=msg),
                ordered=split != "stratified",
            )
        except (NotEnoughData, ValueError) as e:
            progress.stop()
            fail(str(e))
        for w in result.warnings:
            console.print(f"[yellow]warning:[/] {w}")
        result.model.info.update(
            input="flat", flat=tab.spec(features), split=split, leakage_excluded=report["excluded"]
        )
        progress.update(task, description="logging to MLflow and registering")
        tracked = tracking.track(
            result,
            None,
            config,
            holdout_values=result.holdout_values,
            leakage=report,
            register=register,
            data_source=str(file),
            example=_example(tab, features, holdout, y),
            data_fingerprint=_fingerprint(tab),
            model_name=FLAT_MODEL_NAME,
        )
        progress.update(task, description="done", total=1, completed=1)
    training_summary(
        result,
        tracked,
        FLAT_MODEL_NAME,
        metrics_out,
        detail=f", split {split}, {len(features)} features",
        extra={"split": split, "features": features, "leakage": report},
    )
