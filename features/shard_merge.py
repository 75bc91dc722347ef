"""Per-shard outputs put back into the order of the leads file (`features.shards` makes the shards): each
shard's output rows are found in the source leads table (`output_positions`), and the part files are
merged by those positions a window at a time (`ordered_tables`) into one file (`write_ordered`), so the
output does not depend on the number of shards and memory holds one window.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from leadscore.features import schema as S
from leadscore.features.loading import Dataset
from leadscore.features.shards import Partition


class _PartReader:
    """A part file's rows in order, taken a given number at a time."""

    def __init__(self, path: Path):
        self.batches = pq.ParquetFile(path).iter_batches(batch_size=65_536)
        self.buffer: pa.Table | None = None

    def take(self, count: int) -> pa.Table:
        pieces = [self.buffer] if self.buffer is not None else []
        have = self.buffer.num_rows if self.buffer is not None else 0
        while have < count:
            batch = next(self.batches)
            pieces.append(pa.Table.from_batches([batch]))
            have += batch.num_rows
        whole = pa.concat_tables(pieces)
        self.buffer = whole.slice(count)
        return whole.slice(0, count)


def ordered_tables(
    parts: list[Path], positions: list[np.ndarray], window: int = 250_000
) -> Iterator[pa.Table]:
    """The rows of the part files merged by position (each part's positions ascending and the positions
    of all parts distinct), `window` positions at a time."""
    for pos in positions:
        if len(pos) > 1 and not np.all(np.diff(pos) > 0):
            raise ValueError("a part's positions must be ascending")
    readers = [_PartReader(p) for p in parts]
    taken = [0] * len(parts)
    end = max((int(p[-1]) + 1 for p in positions if len(p)), default=0)
    for a in range(0, end, window):
        pieces, where = [], []
        for k, pos in enumerate(positions):
            m = int(np.searchsorted(pos, a + window))
            if m > taken[k]:
                pieces.append(readers[k].take(m - taken[k]))
                where.append(pos[taken[k] : m])
                taken[k] = m
        if pieces:
            order = np.argsort(np.concatenate(where), kind="stable")
            yield pa.concat_tables(pieces).take(order)


def output_positions(part: Partition, k: int, dataset: Dataset, lead_ids: pa.ChunkedArray) -> np.ndarray:
    """The source leads row of each output row of shard k (identified by its lead id)."""
    index = pd.Index(dataset.leads[S.LEAD_ID].to_numpy(dtype=object))
    at = index.get_indexer(lead_ids.to_numpy(zero_copy_only=False).astype(object))
    if (at < 0).any():
        raise ValueError("an output row's lead is not in its shard")
    rows: np.ndarray = np.asarray(part.lead_rows(k), dtype=np.int64)[at]
    return rows


def write_ordered(parts: list[Path], positions: list[np.ndarray], out: Path, csv_by_pandas: bool) -> None:
    """The part files merged in position order into `out` (.parquet, zstd; or .csv written by Arrow, or by
    pandas as `leadscore features` always has); `out` appears only when complete."""
    partial = out.with_name(f".{out.name}.partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    # the columns' types come from a part with rows: in an empty part, a column may have Arrow's null type
    filled = [p for p in parts if pq.ParquetFile(p).metadata.num_rows] or parts[:1]
    schema = pq.read_schema(filled[0])
    tables = (t.cast(schema) for t in ordered_tables(parts, positions))
    writer: pq.ParquetWriter | None = None
    try:
        if out.suffix == ".csv" and csv_by_pandas:
            with partial.open("w", newline="") as f:
                header = True
                for t in tables:
                    t.to_pandas().to_csv(f, index=False, header=header)
                    header = False
                if header:  # no rows: the header alone
                    schema.empty_table().to_pandas().to_csv(f, index=False)
        elif out.suffix == ".csv":
            import pyarrow.csv as pcsv

            with pcsv.CSVWriter(str(partial), schema) as w:
                for t in tables:
                    w.write_table(t)
        else:
            writer = pq.ParquetWriter(partial, schema, compression="zstd")
            for t in tables:
                writer.write_table(t)
            writer.close()
            writer = None
        partial.replace(out)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
