"""The `--shards` and `--memory-budget` options of `leadscore features` and `leadscore score`, and the loop
both run on a dataset too big for memory: partition it by lead hash (`features.shards`), compute each
shard's rows into a part file, and merge the parts back into the leads' order (docs/scale.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from leadscore.cli.common import fail

if TYPE_CHECKING:
    from leadscore.features.loading import Dataset

DEFAULT_BUDGET_GB = 4.0  # features.shards.DEFAULT_BUDGET_GB, repeated so --help needs no import

ShardsOption = Annotated[
    int | None,
    typer.Option(
        "--shards",
        min=1,
        help="Process the dataset in N lead-hash shards, one in memory at a time (1 = all at once). "
        "Default: automatic, from the data's row counts and --memory-budget.",
    ),
]
BudgetOption = Annotated[
    float,
    typer.Option(
        "--memory-budget",
        min=1.0,
        help="GB of memory a shard may take when the number of shards is automatic.",
    ),
]


def shard_count(data: Path, shards: int | None, budget_gb: float) -> int:
    from leadscore.features.problems import DataError
    from leadscore.features.shards import auto_shards

    if shards is not None:
        return shards
    try:
        return auto_shards(data, budget_gb)
    except DataError as e:
        fail(str(e))


def run_sharded(
    data: Path,
    n: int,
    out: Path,
    shard_out: Callable[[Dataset, Path], None],
    csv_by_pandas: bool,
    progress: Callable[[str], None],
) -> None:
    """`shard_out(dataset, part_file)` writes one shard's output rows (Parquet, in the shard's leads order)
    for each of the `n` shards of `data`; the parts are merged into `out` in the order of the leads file.
    Work files go to a temporary directory next to `out` and are removed at the end."""
    import pyarrow.parquet as pq

    from leadscore.features.shard_merge import output_positions, write_ordered
    from leadscore.features.shards import partition

    out.parent.mkdir(parents=True, exist_ok=True)
    progress(f"partitioning {data} into {n} shards")
    part = partition(data, n, work_dir=out.parent)
    try:
        files, positions = [], []
        for k in range(n):
            progress(f"shard {k + 1} of {n}: loading")
            dataset = part.load(k)
            file = part.root / f"out-{k:05d}.parquet"
            progress(f"shard {k + 1} of {n}: computing")
            shard_out(dataset, file)
            ids = pq.read_table(file, columns=["lead_id"]).column("lead_id")
            positions.append(output_positions(part, k, dataset, ids))
            files.append(file)
            del dataset
        progress(f"writing {out}")
        write_ordered(files, positions, out, csv_by_pandas)
    finally:
        part.close()
