"""`leadscore demo-data` and `leadscore features`: make a dataset, and see the features the model reads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from leadscore.cli.common import console, fail, progress_line, utc_moment
from leadscore.cli.sharding import DEFAULT_BUDGET_GB, BudgetOption, ShardsOption, run_sharded, shard_count

if TYPE_CHECKING:
    import pandas as pd

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
    as_of: Annotated[str, typer.Option("--as-of", help="ISO-8601 moment; naive times are UTC.")],
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")],
    shards: ShardsOption = None,
    memory_budget: BudgetOption = DEFAULT_BUDGET_GB,
) -> None:
    """Write every lead's features as of one moment (only data stamped strictly before it is used)."""
    from leadscore.features.loading import load_dataset
    from leadscore.features.problems import DataError

    moment = utc_moment(as_of)
    n = shard_count(data, shards, memory_budget)
    with progress_line() as progress:
        task = progress.add_task("loading", total=None)
        try:
            if n == 1:
                table = _feature_table(load_dataset(data), moment)
                progress.update(task, description=f"writing {out}")
                out.parent.mkdir(parents=True, exist_ok=True)
                table.to_csv(out, index=False) if out.suffix == ".csv" else table.to_parquet(out, index=False)
                written = len(table)
            else:

                def shard_out(dataset: Dataset, file: Path) -> None:
                    _write_part(_feature_table(dataset, moment), file)

                run_sharded(data, n, out, shard_out, True, lambda msg: progress.update(task, description=msg))
                written = _rows_in(out)
        except DataError as e:
            progress.stop()
            fail(str(e))
        progress.update(task, description="done", total=1, completed=1)
    shards_note = f" ({n} shards)" if n > 1 else ""
    console.print(f"wrote features of {written:,} leads as of {moment.isoformat()} to {out}{shards_note}")


def _feature_table(dataset: Dataset, moment: pd.Timestamp) -> pd.DataFrame:
    """lead_id, as_of, then the catalogue features of every lead created before `moment`."""
    import pandas as pd

    from leadscore.features import schema as S
    from leadscore.features.frames import feature_frame

    leads = dataset.leads[dataset.leads[S.CREATED_AT] < moment]
    rows = pd.DataFrame(
        {
            S.LEAD_ID: leads[S.LEAD_ID].to_numpy(),
            "as_of": pd.Series(moment, index=range(len(leads))).astype("datetime64[ms, UTC]"),
        }
    )
    table = feature_frame(dataset, rows)
    table.insert(0, "as_of", rows["as_of"].to_numpy())
    table.insert(0, S.LEAD_ID, rows[S.LEAD_ID].to_numpy())
    return table


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
