"""`leadscore score`: batch scoring of every lead with reasons."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadscore.cli.common import console, fail, load_model, progress_line, setup_mlflow, utc_moment
from leadscore.cli.engine import (
    Engine,
    EngineOption,
    MasterOption,
    check_spark_paths,
    snapshot_at,
    spark_session,
)
from leadscore.cli.sharding import DEFAULT_BUDGET_GB, BudgetOption, ShardsOption, run_sharded, shard_count

if TYPE_CHECKING:
    from leadscore.features.loading import Dataset
    from leadscore.model.batch import BatchSummary


def score(
    data: Annotated[
        Path,
        typer.Option(
            help="Dataset directory (leads, events, outcomes), or a feature table "
            "file (.parquet/.csv) with the model's feature columns."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="ISO-8601 moment; naive times are UTC. Default: the dataset's snapshot_at."
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="MLflow model URI.")] = "models:/leadscore@champion",
    top: Annotated[int, typer.Option(min=0, max=20, help="Top positive and negative reasons per lead.")] = 5,
    engine: EngineOption = Engine.local,
    master: MasterOption = None,
    shards: ShardsOption = None,
    memory_budget: BudgetOption = DEFAULT_BUDGET_GB,
) -> None:
    """Score every lead (created before --as-of) with the same features and reasons as the API."""

    from leadscore.features.loading import load_dataset
    from leadscore.features.problems import DataError
    from leadscore.model.batch import score_dataset, score_table
    from leadscore.model.batch_files import BatchInputError, check_out

    moment = utc_moment(as_of) if as_of is not None else None
    if engine is Engine.spark:
        _score_on_spark(data, out, model, moment, top, master)
        return
    try:
        check_out(out)
    except BatchInputError as e:
        fail(str(e))
    if not data.exists():
        fail(f"--data: {data} does not exist (give a dataset directory or a .parquet/.csv feature table)")
    if data.is_file() and data.suffix not in (".parquet", ".csv"):
        fail(f"--data: {data} is neither a directory nor a .parquet or .csv file")
    n_shards = shard_count(data, shards, memory_budget) if data.is_dir() else 1

    setup_mlflow()
    from leadscore.settings import get_settings

    exploration = get_settings().exploration()  # the service's handoff decision, drawn the same way

    with progress_line() as progress:
        task = progress.add_task(f"loading model {model}", total=None)
        scoring_model = load_model(model, progress)
        progress.update(task, description=f"loading {data}")

        def advance(done: int, total: int) -> None:
            progress.update(task, description="scoring leads", completed=done, total=total)

        try:
            if data.is_dir() and n_shards > 1:
                summaries: list[BatchSummary] = []

                def shard_out(dataset: Dataset, file: Path) -> None:
                    summaries.append(
                        score_dataset(
                            dataset, scoring_model, file, moment, top_n=top, exploration=exploration
                        )
                    )

                run_sharded(
                    data, n_shards, out, shard_out, False, lambda msg: progress.update(task, description=msg)
                )
                summary = _total(summaries, out)
            elif data.is_dir():
                dataset = load_dataset(data)
                summary = score_dataset(
                    dataset, scoring_model, out, moment, top_n=top, progress=advance, exploration=exploration
                )
            else:
                summary = score_table(
                    data, scoring_model, out, moment, top_n=top, progress=advance, exploration=exploration
                )
        except (DataError, BatchInputError) as e:
            progress.stop()
            fail(str(e))
    version = f" version {scoring_model.version}" if scoring_model.version else ""
    when = f" as of {summary.as_of.isoformat()}" if summary.as_of is not None else ""
    grades = ", ".join(f"{g} {n:,}" for g, n in summary.grades.items())
    shards_note = f" ({n_shards} shards)" if n_shards > 1 else ""
    console.print(
        f"scored {summary.n_rows:,} leads{when} with {scoring_model.name}{version} "
        f"({scoring_model.family}): {summary.n_qualified:,} qualified; grades {grades}; "
        f"wrote {out}{shards_note}"
    )


def _total(summaries: list[BatchSummary], out: Path) -> BatchSummary:
    """The shards' summaries added up (every shard is scored as of the same moment)."""
    from leadscore.model.batch import BatchSummary

    grades: dict[str, int] = {}
    for s in summaries:
        for g, c in s.grades.items():
            grades[g] = grades.get(g, 0) + c
    return BatchSummary(
        n_rows=sum(s.n_rows for s in summaries),
        out=out,
        as_of=summaries[0].as_of,
        grades=grades,
        n_qualified=sum(s.n_qualified for s in summaries),
    )


def _score_on_spark(data: Path, out: Path, model: str, moment: Any, top: int, master: str | None) -> None:
    """`leadscore score --engine spark`: `leadscore.spark.score` on the dataset directory's tables."""
    check_spark_paths(data, out)
    if moment is None:
        moment = snapshot_at(data)
        if moment is None:
            fail(f"--as-of: give it with --engine spark ({data / 'dataset.json'} has no snapshot_at)")
    setup_mlflow()
    from leadscore import spark as ls

    with spark_session(master, "leadscore score") as session:
        leads, events = ls.read_table(session, data, "leads"), ls.read_table(session, data, "events")
        ls.score(session, leads, events, model, moment, top_n=top).write.mode("overwrite").parquet(str(out))
        written = session.read.parquet(str(out))
        grades = {r["grade"]: r["count"] for r in written.groupBy("grade").count().collect()}
        n_qualified = written.where("qualified").count()
    shown = ", ".join(f"{g} {grades[g]:,}" for g in sorted(grades))
    console.print(
        f"scored {sum(grades.values()):,} leads as of {ls.utc(moment).isoformat()} on Spark with {model}: "
        f"{n_qualified:,} qualified; grades {shown}; wrote {out}"
    )
