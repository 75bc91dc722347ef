"""`leadscore score`: batch scoring of every lead with reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leadscore.cli.common import console, fail, progress_line, setup_mlflow, utc_moment


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
) -> None:
    """Score every lead (created before --as-of) with the same features and reasons as the API."""

    from leadscore.features.loading import load_dataset
    from leadscore.features.problems import DataError
    from leadscore.model.batch import BatchInputError, check_out, score_dataset, score_table

    moment = utc_moment(as_of) if as_of is not None else None
    try:
        check_out(out)
    except BatchInputError as e:
        fail(str(e))
    if not data.exists():
        fail(f"--data: {data} does not exist (give a dataset directory or a .parquet/.csv feature table)")
    if data.is_file() and data.suffix not in (".parquet", ".csv"):
        fail(f"--data: {data} is neither a directory nor a .parquet or .csv file")

    setup_mlflow()
    from leadscore.model.registry import load_scoring_model
    from leadscore.settings import get_settings

    exploration = get_settings().exploration()  # the service's handoff decision, drawn the same way

    with progress_line() as progress:
        task = progress.add_task(f"loading model {model}", total=None)
        try:
            scoring_model = load_scoring_model(model)
        except Exception as e:  # noqa: BLE001 - MLflow raises many types; the message is what matters
            progress.stop()
            fail(f"--model: cannot load {model}: {e}")
        progress.update(task, description=f"loading {data}")

        def advance(done: int, total: int) -> None:
            progress.update(task, description="scoring leads", completed=done, total=total)

        try:
            if data.is_dir():
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
    console.print(
        f"scored {summary.n_rows:,} leads{when} with {scoring_model.name}{version} "
        f"({scoring_model.family}): {summary.n_qualified:,} qualified; grades {grades}; wrote {out}"
    )
