"""`leadscore train`: train, evaluate and register a model from a dataset of leads, events and outcomes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast, get_args

import typer

from leadscore.cli.common import console, fail, progress_line, setup_mlflow, training_summary


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
    from leadscore.features.loading import load_dataset
    from leadscore.features.problems import DataError
    from leadscore.model import tracking
    from leadscore.model.policy import PolicyKind
    from leadscore.model.registry import MODEL_NAME
    from leadscore.model.train import ModelChoice, TrainConfig
    from leadscore.model.train import train as run_train
    from leadscore.model.training_data import NotEnoughData

    if model not in get_args(ModelChoice):
        fail("--model must be auto, scorecard or boosted")
    if policy not in get_args(PolicyKind):
        fail("--policy must be f1, capacity or precision")
    config = TrainConfig(
        definition=definition(horizon_days, ages, positive, negative),
        model=cast(ModelChoice, model),  # checked just above
        policy=cast(PolicyKind, policy),
        policy_target=target,
        seed=seed,
    )
    setup_mlflow()
    if if_missing:
        from leadscore.model import registry

        version = registry.alias_version(registry.CHAMPION)
        if version is not None:
            console.print(
                f"leadscore version {version} is champion already: not training "
                "(drop --if-missing to retrain)"
            )
            return
    with progress_line() as progress:
        task = progress.add_task("loading data", total=None)
        try:
            dataset = load_dataset(data)
        except DataError as e:
            progress.stop()
            fail(str(e))
        for note in dataset.notes:
            console.print(f"[yellow]note:[/] {note}")
        try:
            result = run_train(dataset, config, progress=lambda msg: progress.update(task, description=msg))
        except (NotEnoughData, ValueError) as e:
            progress.stop()
            fail(str(e))
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
            extra["oracle"] = oracle_metrics(Path(data), result)
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
    oracle = extra.get("oracle")
    training_summary(
        result,
        tracked,
        MODEL_NAME,
        metrics_out,
        lines=[f"observable oracle ROC AUC on the same rows: {oracle['roc_auc']:.4f}"] if oracle else [],
        extra={**extra, "leakage": result.leakage},
    )


def definition(horizon_days: int, ages: str | None, positive: str | None, negative: str | None):
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
        fail(str(e))


def oracle_metrics(data: Path, result) -> dict:
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
