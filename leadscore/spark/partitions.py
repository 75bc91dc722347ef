"""What every Spark path of leadscore shares: the session of the CLI, reading a dataset directory's tables,
times made unambiguous, and the lead-hash partitions that hand each lead's rows to one pandas call.

Spark hands a `TimestampType` value to Python as a naive time in the session's time zone; `micros` turns
such a column into microseconds since the epoch first (a number means the same in every session time zone)
and `from_micros` turns it back into UTC on the executor, so results do not depend on
`spark.sql.session.timeZone`. String times travel as they are and are read by the loader's rule (an
ISO-8601 string without an offset is UTC).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from leadscore.features import schema as S

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

PART = "_leadscore_part"  # the lead-hash partition key, dropped before the loader sees a partition


def session(master: str | None = None, name: str = "leadscore") -> SparkSession:
    """The Spark session of the CLI: `master` if given, else spark-submit's (or local[*]). A local master
    runs its Python workers with this interpreter, which has leadscore installed."""
    import os
    import sys

    from pyspark.sql import SparkSession

    if (master or "local").startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Parquet times as UTC instants to the millisecond, as the local commands write them (Spark's default,
    # INT96, reads back as naive nanoseconds)
    builder = SparkSession.builder.appName(name).config(
        "spark.sql.parquet.outputTimestampType", "TIMESTAMP_MILLIS"
    )
    return (builder.master(master) if master else builder).getOrCreate()


def read_table(spark: SparkSession, data_dir: Path, name: str) -> DataFrame:
    """A dataset directory's table `name` (docs/data-model.md): `name`.parquet (a file or a directory of
    part files), else `name`.csv (with a header; every column read as text, as the loader reads CSV)."""
    df = optional_table(spark, data_dir, name)
    if df is None:
        raise FileNotFoundError(f"--data: {data_dir} has no {name}.parquet or {name}.csv")
    return df


def optional_table(spark: SparkSession, data_dir: Path, name: str) -> DataFrame | None:
    """`read_table`, or None when the directory does not have the table (outcomes, selection)."""
    for ext in ("parquet", "csv"):
        path = Path(data_dir) / f"{name}.{ext}"
        if path.exists():
            if ext == "parquet":
                return spark.read.parquet(str(path))
            return spark.read.csv(str(path), header=True)
    return None


def utc(moment: Any) -> pd.Timestamp:
    """`moment` (ISO string, datetime or Timestamp; naive = UTC, as `--as-of`) as a UTC Timestamp."""
    t = pd.Timestamp(moment)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def micros(df: DataFrame, column: str) -> tuple[DataFrame, bool]:
    """`df` with a `TimestampType` `column` as microseconds since the epoch, and whether it was one."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    if column in df.columns and isinstance(df.schema[column].dataType, TimestampType):
        return df.withColumn(column, F.unix_micros(F.col(column))), True
    return df, False


def from_micros(frame: pd.DataFrame, column: str) -> None:
    """Undo `micros` on an executor's pandas frame: UTC times (a null stays a missing time)."""
    frame[column] = pd.to_datetime(frame[column], unit="us", utc=True)


def iso(df: DataFrame, column: str) -> Column:
    """A time column as ISO-8601 text: a `TimestampType` with its offset in the session's time zone
    (which names the same instant in any zone), a string as it is."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    if isinstance(df.schema[column].dataType, TimestampType):
        return F.date_format(F.col(column), "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")
    return F.col(column).cast("string")


def by_lead(
    spark: SparkSession,
    leads: DataFrame,
    rows: DataFrame,
    run: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame],
    schema: StructType,
    partitions: int | None,
) -> DataFrame:
    """`run(leads_pdf, rows_pdf)` on each lead-hash partition: the leads and the rows of another table
    keyed by `lead_id`, co-grouped on `pmod(xxhash64(lead_id), partitions)`, so every lead arrives with
    all its rows (default: twice the default parallelism)."""
    from pyspark.sql import functions as F

    n = partitions or 2 * spark.sparkContext.defaultParallelism
    key = F.pmod(F.xxhash64(F.col(S.LEAD_ID).cast("string")), F.lit(n))
    return (
        leads.withColumn(PART, key)
        .groupBy(PART)
        .cogroup(rows.withColumn(PART, key).groupBy(PART))
        .applyInPandas(run, schema)
    )


def snapshot(tables: list[tuple[DataFrame, str]]) -> pd.Timestamp:
    """The data's last timestamp over (table, time column) pairs, read as the loader reads it when
    dataset.json has no `snapshot_at`: Spark timestamps as instants, text by the loader's own parser (a
    time it cannot read is left out here; the loading pass then reports it)."""
    from pyspark.sql import functions as F

    from leadscore.features.checks import parse_timestamps

    last = pd.NaT
    for df, column in tables:
        values, typed = micros(df.select(column), column)

        def batch_max(frames, column=column, typed=typed):  # the loader's parser, one Arrow batch at a time
            for frame in frames:
                if typed:
                    from_micros(frame, column)
                t = parse_timestamps(frame[column].reset_index(drop=True), "", column, [])
                if t.notna().any():
                    yield pd.DataFrame({"m": [int(t.max().value // 1_000_000)]})

        row = values.mapInPandas(batch_max, "m long").agg(F.max("m")).first()
        m = None if row is None else row[0]
        if m is not None:
            t = pd.Timestamp(m, unit="ms", tz="UTC")
            last = t if pd.isna(last) or t > last else last
    if pd.isna(last):
        raise ValueError("the data has no timestamp: give snapshot_at")
    return last
