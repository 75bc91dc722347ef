"""The files batch scoring reads and writes: a flat feature table (Parquet or CSV: `leadscore features`
output, or a CRM export for a `leadscore table` model) read in chunks of validated values, and the output
written in chunks under a temporary name, so a file appears under its name only when complete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from leadscore.features import schema as S
from leadscore.model.encoding import Encoder

if TYPE_CHECKING:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

FORMATS = (".parquet", ".csv")
MISSING_MARKERS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")


class BatchInputError(ValueError):
    """The input cannot be scored; the message names the file or column and the reason."""


def check_out(out: Path) -> None:
    if out.suffix not in FORMATS:
        raise BatchInputError(f"--out: {out} must end in .parquet or .csv")


class OutputWriter:
    """Streams Arrow tables into a Parquet or CSV file; the file appears under its name only when complete."""

    def __init__(self, out: Path):
        self.final = out
        self.writer: pcsv.CSVWriter | pq.ParquetWriter | None = None
        self.out = out.with_name(f".{out.name}.partial")

    def write(self, table: pa.Table) -> None:
        writer = self.writer
        if writer is None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            if self.final.suffix == ".csv":
                import pyarrow.csv as pcsv

                writer = pcsv.CSVWriter(str(self.out), table.schema)
            else:
                import pyarrow.parquet as pq

                writer = pq.ParquetWriter(str(self.out), table.schema, compression="zstd")
            self.writer = writer
        writer.write_table(table)

    def close(self, empty: pa.Table) -> None:
        if self.writer is None:  # no rows: still write a file with the columns
            self.write(empty)
        assert self.writer is not None
        self.writer.close()
        self.out.replace(self.final)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.out.unlink(missing_ok=True)


def table_rows(path: Path) -> int:
    """How many rows the feature table at `path` holds (for progress)."""
    if path.suffix not in FORMATS:
        raise BatchInputError(f"--data: {path} is neither a directory nor a .parquet or .csv file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def table_chunks(
    path: Path, encoder: Encoder, chunk_rows: int, moment: pd.Timestamp, as_of_column: bool
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """(row positions, feature values, lead ids, as_of in ms) of each chunk of the table. Ids come from
    `lead_id` (else the 1-based row number); the moment from an `as_of` column when `as_of_column` and the
    table has one, else `moment`."""
    start = 0
    for df in _frames(path, chunk_rows):
        values = _values(df, encoder, path, start)
        ids = (
            df[S.LEAD_ID].astype(str).to_numpy(dtype=object)
            if S.LEAD_ID in df.columns
            else np.arange(start + 1, start + len(df) + 1).astype(str).astype(object)
        )
        if "as_of" in df.columns and as_of_column:
            ts = pd.to_datetime(df["as_of"], utc=True, errors="coerce", format="ISO8601")
            if ts.isna().any():
                i = int(np.flatnonzero(ts.isna().to_numpy())[0])
                raise BatchInputError(f"{path}, row {start + i + 1}, column 'as_of': not an ISO-8601 time")
            stamps = ts.to_numpy(dtype="datetime64[ms]")
        else:
            stamps = np.full(len(df), np.datetime64(moment.tz_convert(None).to_datetime64(), "ms"))
        yield np.arange(start, start + len(df)), values, ids, stamps
        start += len(df)


def _frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    elif path.suffix == ".csv":
        yield from pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=list(MISSING_MARKERS), chunksize=chunk_rows
        )
    else:
        raise BatchInputError(f"--data: {path} is neither a directory nor a .parquet or .csv file")


def _values(df: pd.DataFrame, encoder: Encoder, path: Path, first_row: int) -> dict[str, np.ndarray]:
    missing = [f for f in encoder.features if f not in df.columns]
    if missing:
        raise BatchInputError(f"{path}: missing column(s) the model needs: {', '.join(missing)}")
    values = {}
    for name in encoder.features:
        col = df[name]
        if name in encoder.vocab:
            values[name] = (
                col.astype(object)
                .where(col.notna(), None)
                .map(lambda v: v if v is None or isinstance(v, str) else str(v))
                .to_numpy(dtype=object)
            )
        else:
            num = pd.to_numeric(col, errors="coerce")
            bad = num.isna() & col.notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise BatchInputError(
                    f"{path}, row {first_row + i + 1}, column {name!r}: "
                    f"not a number: {str(col.iloc[i])[:40]!r}"
                )
            values[name] = num.to_numpy(dtype=np.float64, na_value=np.nan)
    return values
