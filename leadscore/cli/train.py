"""`leadscore train`: train, evaluate and register a model from a dataset of leads, events and outcomes,
or from a training table built beforehand (`leadscore features --training`, on Spark for data past one
machine), all of it or a seeded sample of its leads (docs/scale.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast, get_args

import typer

from leadscore.cli.common import console, fail, load_data, progress_line, setup_mlflow, training_summary
from leadscore.cli.definition import (
    AgesOption,
    HorizonOption,
    NegativeOption,
    PositiveOption,
    definition,
    given,
)

if TYPE_CHECKING:
    import pandas as pd

    from leadscore.model.train import TrainConfig, TrainResult


def train(
    data: Annotated[Path | None, typer.Option(help="Dataset directory (leads, events, outcomes).")] = None,
    table: Annotated[
        Path | None,
        typer.Option(
            "--table",
            help="Train from this training table instead of --data: a directory written by `leadscore "
            "features --training` (locally or with --engine spark). The model learns the table's "
            "qualified-lead definition.",
        ),
    ] = None,
    sample: Annotated[
        float,
        typer.Option(
            help="With --table: train on the rows of this fraction of its leads, drawn by a hash of "
            "(lead id, --seed): a table too big for this machine is read part by part, the sample kept.",
        ),
    ] = 1.0,
    horizon_days: HorizonOption = None,
    model: Annotated[str, typer.Option(help="auto | scorecard | boosted")] = "auto",
    policy: Annotated[str, typer.Option(help="Handoff policy: f1 | capacity | precision")] = "f1",
    target: Annotated[float | None, typer.Option(help="Leads per week (capacity) or precision.")] = None,
    ages: AgesOption = None,
    positive: PositiveOption = None,
    negative: NegativeOption = None,
    seed: Annotated[int, typer.Option()] = 0,
    metrics_out: Annotated[Path | None, typer.Option(help="Write metrics JSON here.")] = None,
    register: Annotated[bool, typer.Option(help="Register the model in the MLflow registry.")] = True,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing if a champion exists.")
    ] = False,
) -> None:
    """Train, evaluate and register a model from event data (or a training table built from it)."""
    from leadscore.model.policy import PolicyKind
    from leadscore.model.train import ModelChoice, TrainConfig

    if (data is None) == (table is None):
        fail("give one of --data (a dataset directory) and --table (a training table)")
    if not 0 < sample <= 1:
        fail(f"--sample: a fraction of the leads in (0, 1], not {sample}")
    if sample != 1.0 and table is None:
        fail("--sample: only with --table")
    if model not in get_args(ModelChoice):
        fail("--model must be auto, scorecard or boosted")
    if policy not in get_args(PolicyKind):
        fail("--policy must be f1, capacity or precision")
    qualified = definition(horizon_days, ages, positive, negative)
    if table is not None:
        qualified = _table_definition(table, qualified, given(horizon_days, ages, positive, negative))
    config = TrainConfig(
        definition=qualified,
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
    if table is not None:
        _train_table(table, sample, config, metrics_out, register)
    else:
        _train_data(cast(Path, data), config, metrics_out, register)


def _train_data(data: Path, config: TrainConfig, metrics_out: Path | None, register: bool) -> None:
    from leadscore.model import tracking
    from leadscore.model.registry import MODEL_NAME
    from leadscore.model.train import train as run_train

    with progress_line() as progress:
        task = progress.add_task("loading data", total=None)
        dataset = load_data(data, progress)
        result = _fit(
            lambda: run_train(dataset, config, progress=lambda m: progress.update(task, description=m))
        )
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


def _train_table(
    path: Path, sample: float, config: TrainConfig, metrics_out: Path | None, register: bool
) -> None:
    """`--table`: the table's rows (or the sample of its leads) through the same fit as `--data`
    (`model.train.fit_table`); the same table gives the same model."""
    from leadscore.features.feature_tables import read_training_table
    from leadscore.model import tracking
    from leadscore.model.registry import MODEL_NAME
    from leadscore.model.train import fit_table

    with progress_line() as progress:
        what = f"a {sample:g} sample of the leads of {path}" if sample < 1 else str(path)
        task = progress.add_task(f"reading {what}", total=None)
        try:
            rows, meta = read_training_table(path, sample, config.seed)
        except (ValueError, OSError) as e:
            progress.stop()
            fail(f"--table: {e}")
        result = _fit(lambda: fit_table(rows, config, lambda m: progress.update(task, description=m)))
        result.model.info["training_table"] = {"path": str(path), "sample": sample, "seed": config.seed}
        result.leakage["note"] = (
            "not audited: trained from a training table, which holds no custom lead columns "
            "(the catalogue features it holds never read them)"
        )
        progress.update(task, description="logging to MLflow and registering")
        tracked = tracking.track(
            result,
            None,
            config,
            holdout_values=result.holdout_values,
            leakage=result.leakage,
            register=register,
            data_source=str(path),
            example=table_example(result.rows, rows),
            data_fingerprint=table_fingerprint(path, rows, meta, sample, config.seed),
        )
        progress.update(task, description="done", total=1, completed=1)
    console.print(f"[yellow]note:[/] leakage audit {result.leakage['note']}")
    training_summary(
        result,
        tracked,
        MODEL_NAME,
        metrics_out,
        detail=f", {sample:g} of the table's leads" if sample < 1 else "",
        extra={"leakage": result.leakage, "table": {"path": str(path), "sample": sample}},
    )


def _fit(run) -> TrainResult:
    from leadscore.model.training_data import NotEnoughData

    try:
        result: TrainResult = run()
    except (NotEnoughData, ValueError) as e:
        fail(str(e))
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    return result


def _table_definition(path: Path, cli, options: list[str]):
    """The table's qualified-lead definition; definition options may only repeat it."""
    from leadscore.features.feature_tables import read_meta
    from leadscore.features.labels import QualifiedDefinition

    try:
        meta = read_meta(path)
    except (ValueError, OSError) as e:
        fail(f"--table: {e}")
    built = QualifiedDefinition.from_dict(meta["definition"])
    if options:
        differ = [k for k, v in cli.to_dict().items() if built.to_dict()[k] != v]
        if differ:
            fail(
                f"{', '.join(options)}: the table at {path} was built for another definition "
                f"({', '.join(f'{k} {built.to_dict()[k]}' for k in differ)}); build a table for this one "
                "(leadscore features --training) or leave the options out"
            )
    return built


def table_fingerprint(path: Path, rows: pd.DataFrame, meta: dict, sample: float, seed: int) -> dict[str, Any]:
    """The training data's record for a table: what was read, the data's snapshot, and a content hash of
    the rows trained on (the gate's "fresher data" compares the snapshot)."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).hexdigest()
    return {
        "table": str(path),
        "sample": sample,
        "sample_seed": seed,
        "n_rows": len(rows),
        "n_leads": int(rows["lead_id"].nunique()),
        "snapshot_at": str(pd.Timestamp(meta["snapshot_at"])),
        "definition": meta["definition"],
        "sha256": digest,
    }


def table_example(result_rows: pd.DataFrame, table: pd.DataFrame) -> dict[str, Any]:
    """A valid POST /v1/score body from a table's holdout lead (its attributes, created at its age): a
    table holds features, not events, so the example has none."""
    import pandas as pd

    from leadscore.features import schema as S

    hold = result_rows[result_rows["part"] == "holdout"]
    pick = hold.sort_values(["label", "as_of"], ascending=[False, False]).iloc[0]
    row = table[(table[S.LEAD_ID] == pick[S.LEAD_ID]) & (table["as_of"] == pick["as_of"])].iloc[0]
    created = pick["as_of"] - pd.Timedelta(days=float(row["lead_age_days"]))
    attrs = {a: row[a] for a in S.LEAD_ATTRIBUTES if a in row.index and isinstance(row[a], str)}

    def iso(t: pd.Timestamp) -> str:
        return t.floor("ms").isoformat().replace("+00:00", "Z")

    lead = {"lead_id": str(pick[S.LEAD_ID]), "created_at": iso(created), "as_of": iso(pick["as_of"])}
    return {"leads": [{**lead, "attributes": attrs, "events": []}]}


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
