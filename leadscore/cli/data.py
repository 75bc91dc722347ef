"""`leadscore demo-data` and `leadscore features`: make a dataset, and write the features the model reads
(at one moment, or the training table; locally or on Spark)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from leadscore.cli.common import console, fail, load_data, progress_line, utc_moment
from leadscore.cli.definition import (
    AgesOption,
    HorizonOption,
    NegativeOption,
    PositiveOption,
    definition,
    given,
)
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
    import pandas as pd

    from leadscore.features.labels import QualifiedDefinition
    from leadscore.features.loading import Dataset


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
                fail(f"--drift-at: not an ISO-8601 time: {drift_at!r}")
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            shift = DriftParams(at=moment.isoformat())
        params = DemoParams(drift=shift)
    with progress_line() as progress:
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


def features(
    data: Annotated[Path, typer.Option(help="Dataset directory.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Output file (.parquet or .csv); with --training or --engine spark a .parquet directory "
            "of part files."
        ),
    ],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="ISO-8601 moment; naive times are UTC. Required unless --training."),
    ] = None,
    training: Annotated[
        bool,
        typer.Option(
            "--training",
            help="Write the training table instead: every training row of the qualified-lead definition "
            "(lead_id, as_of, moment, label, ...) with its features, for `leadscore train --table`.",
        ),
    ] = False,
    horizon_days: HorizonOption = None,
    ages: AgesOption = None,
    positive: PositiveOption = None,
    negative: NegativeOption = None,
    engine: EngineOption = Engine.local,
    master: MasterOption = None,
    shards: ShardsOption = None,
    memory_budget: BudgetOption = DEFAULT_BUDGET_GB,
) -> None:
    """Write every lead's features as of one moment (only data stamped strictly before it is used), or
    with --training the training table a model is fitted on (docs/scale.md)."""
    options = given(horizon_days, ages, positive, negative)
    if training:
        if as_of is not None:
            fail("--as-of: not with --training (each training row has its own as_of)")
        if out.suffix != ".parquet":
            fail(f"--out: {out} must end in .parquet with --training (a directory of part files)")
        qualified = definition(horizon_days, ages, positive, negative)
        if engine is Engine.spark:
            _training_on_spark(data, out, qualified, master)
        else:
            _training_table(data, out, qualified, shards)
        return
    if options:
        fail(f"{', '.join(options)}: only with --training (the definition of the training rows' labels)")
    if as_of is None:
        fail("--as-of: give the moment of the features (or --training for the training table)")
    moment = utc_moment(as_of)
    if engine is Engine.spark:
        _features_on_spark(data, out, moment, master)
    else:
        _features(data, out, moment, shards, memory_budget)


def _features(data: Path, out: Path, moment: pd.Timestamp, shards: int | None, memory_budget: float) -> None:
    from leadscore.features.feature_tables import moment_table
    from leadscore.features.loading import load_dataset
    from leadscore.features.problems import DataError

    n = shard_count(data, shards, memory_budget)
    with progress_line() as progress:
        task = progress.add_task("loading", total=None)
        try:
            if n == 1:
                table = moment_table(load_dataset(data), moment)
                progress.update(task, description=f"writing {out}")
                out.parent.mkdir(parents=True, exist_ok=True)
                table.to_csv(out, index=False) if out.suffix == ".csv" else table.to_parquet(out, index=False)
                written = len(table)
            else:

                def shard_out(dataset: Dataset, file: Path) -> None:
                    _write_part(moment_table(dataset, moment), file)

                run_sharded(data, n, out, shard_out, True, lambda msg: progress.update(task, description=msg))
                written = _rows_in(out)
        except DataError as e:
            progress.stop()
            fail(str(e))
        progress.update(task, description="done", total=1, completed=1)
    shards_note = f" ({n} shards)" if n > 1 else ""
    console.print(f"wrote features of {written:,} leads as of {moment.isoformat()} to {out}{shards_note}")


def _features_on_spark(data: Path, out: Path, moment: pd.Timestamp, master: str | None) -> None:
    """`leadscore features --engine spark`: `leadscore.spark.features` on the dataset's tables."""
    check_spark_paths(data, out)
    from leadscore import spark as ls

    with spark_session(master, "leadscore features") as session:
        leads, events = ls.read_table(session, data, "leads"), ls.read_table(session, data, "events")
        ls.features(session, leads, events, moment).write.mode("overwrite").parquet(str(out))
        written = session.read.parquet(str(out)).count()
    console.print(f"wrote features of {written:,} leads as of {moment.isoformat()} to {out} (on Spark)")


def _training_table(data: Path, out: Path, qualified: QualifiedDefinition, shards: int | None) -> None:
    """`leadscore features --training`: the training table, in this process (the whole dataset in memory:
    for more data, `--engine spark`, with --master 'local[*]' on one machine)."""
    import pyarrow.parquet as pq

    from leadscore.features.feature_tables import arrow_schema, to_arrow, training_table, write_meta

    if shards is not None and shards > 1:
        fail("--shards: the training table is built in one process; use --engine spark for more data")
    _replace_table_dir(out)
    with progress_line() as progress:
        task = progress.add_task("loading", total=None)
        dataset = load_data(data, progress)
        progress.update(task, description="building the training rows and their features")
        table = training_table(dataset, qualified)
        progress.update(task, description=f"writing {out}")
        selection = dataset.selection is not None
        out.mkdir(parents=True)
        pq.write_table(to_arrow(table, arrow_schema(True, selection)), out / "part-00000.parquet")
        write_meta(out, qualified, dataset.snapshot_at, selection)
        progress.update(task, description="done", total=1, completed=1)
    labelled = table[~table["unlabelled"]] if selection else table
    _training_written(out, len(table), int(labelled["label"].sum()), dataset.snapshot_at, "")


def _training_on_spark(data: Path, out: Path, qualified: QualifiedDefinition, master: str | None) -> None:
    """`leadscore features --training --engine spark`: `leadscore.spark.training_rows` on the dataset's
    tables, written with its description by `leadscore.spark.write_training_table` (which overwrites:
    like the local command, it may only replace an earlier training table)."""
    check_spark_paths(data, out)
    _replace_table_dir(out)
    from leadscore import spark as ls

    with spark_session(master, "leadscore features --training") as session:
        leads, events = ls.read_table(session, data, "leads"), ls.read_table(session, data, "events")
        outcomes = ls.optional_table(session, data, "outcomes")
        selection = ls.optional_table(session, data, "selection")
        given_snapshot = snapshot_at(data)
        snap = given_snapshot if given_snapshot is not None else ls.data_snapshot(leads, events, outcomes)
        table = ls.training_rows(
            session, leads, events, outcomes, qualified, snapshot_at=snap, selection_df=selection
        )
        ls.write_training_table(session, table, out, qualified, snap)
        written = session.read.parquet(str(out))
        labelled = written.where("NOT unlabelled") if selection is not None else written
        n_rows, n_positive = written.count(), labelled.where("label = 1").count()
    _training_written(out, n_rows, n_positive, snap, " (on Spark)")


def _training_written(out: Path, n_rows: int, n_positive: int, snap: pd.Timestamp, where: str) -> None:
    console.print(
        f"wrote the training table, {n_rows:,} rows ({n_positive:,} labelled positive) of the data as of "
        f"{snap.isoformat()}, to {out}{where}"
    )


def _replace_table_dir(out: Path) -> None:
    """Make way for a training table at `out`: an earlier training table is replaced, anything else kept."""
    import shutil

    from leadscore.features.feature_tables import TABLE_META

    if not out.exists():
        return
    if out.is_dir() and ((out / TABLE_META).exists() or not any(out.iterdir())):
        shutil.rmtree(out)
        return
    fail(f"--out: {out} exists and is not a training table: not overwriting it")


def _write_part(table: pd.DataFrame, file: Path) -> None:
    """One shard's features as Parquet with the types the whole table has (a categorical feature with no
    value in this shard is still a string column, not Arrow's null type)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from leadscore.features import catalog

    t = pa.Table.from_pandas(table, preserve_index=False)
    schema = pa.schema(
        [
            pa.field(f.name, pa.string()) if pa.types.is_null(f.type) and f.name in catalog.CATEGORICAL else f
            for f in t.schema
        ]
    ).with_metadata(t.schema.metadata)
    pq.write_table(t.cast(schema), file)


def _rows_in(path: Path) -> int:
    if path.suffix == ".csv":
        with path.open("rb") as f:
            return max(sum(1 for _ in f) - 1, 0)
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
