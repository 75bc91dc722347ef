"""Feature tables on Spark: every lead's features at one moment (`features`, what `leadscore features
--engine spark` writes) and the training table (`training_rows`, what `leadscore features --training
--engine spark` writes and `leadscore train --table` trains from).

Both run the local commands' own functions (`features.feature_tables.moment_table`, `training_table`) on
lead-hash partitions, each partition first validated by the loader (`loading.dataset_from_frames`: ids,
allowed values, timestamps, exact-duplicate removal), so the rows and values are the local ones.

`by_lead` co-groups two frames, and a training row needs three tables of a lead (four with a selection
table). They travel as one tagged union: each row of events, outcomes and selection keeps its own
columns (disjoint names besides `lead_id`, the others null) and a `_leadscore_table` tag, and the executor
splits the union back into the tables exactly as they were read. A join keyed by lead would instead
multiply a lead's events by its outcomes (and need undoing before the duplicate rule could see the
events as they were); a second cogroup would shuffle the leads twice.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from leadscore.features import schema as S
from leadscore.spark.partitions import PART, by_lead, from_micros, micros, snapshot, utc

if TYPE_CHECKING:
    from collections.abc import Callable

    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from leadscore.features.labels import QualifiedDefinition
    from leadscore.features.loading import Dataset

TABLE = "_leadscore_table"  # which table a row of the tagged union came from
# table -> (its columns the loader reads, its time column)
SOURCES = {
    "events": (S.EVENT_COLUMNS, S.TIMESTAMP),
    "outcomes": (S.OUTCOME_COLUMNS, S.OUTCOME_AT),
    "selection": (S.SELECTION_COLUMNS, S.HANDED_AT),
}


def features(
    spark: SparkSession,
    leads_df: DataFrame,
    events_df: DataFrame,
    as_of: Any,
    *,
    partitions: int | None = None,
) -> DataFrame:
    """lead_id, as_of, then the catalogue features of every lead of `leads_df` created before `as_of`:
    the columns and values `leadscore features` writes, one row per lead, in no particular order."""
    from leadscore.features.feature_tables import arrow_schema, moment_table

    moment = utc(as_of)
    return _tables_by_lead(
        spark,
        leads_df,
        _tagged(events_df, None, None),
        moment,
        arrow_schema(training=False),
        lambda dataset: moment_table(dataset, moment),
        partitions,
    )


def training_rows(
    spark: SparkSession,
    leads_df: DataFrame,
    events_df: DataFrame,
    outcomes_df: DataFrame | None,
    definition: QualifiedDefinition,
    *,
    snapshot_at: Any = None,
    selection_df: DataFrame | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """The training table of `definition` (`features.feature_tables.training_table`: lead_id, as_of,
    moment, label, with a selection table `propensity` and `unlabelled`, then the catalogue features), one
    row per (lead, as_of), in no particular order: sorted by (as_of, lead_id) it is the local table.

    `snapshot_at`: the moment the data was exported (dataset.json's); without it, the data's last
    timestamp by the loader's rule, which costs a pass over the times of every table (`snapshot`).
    Censoring and the hand-over rule compare against it, so it must be the whole data's, never a
    partition's."""
    from leadscore.features.feature_tables import arrow_schema, training_table

    snap = utc(snapshot_at) if snapshot_at is not None else data_snapshot(leads_df, events_df, outcomes_df)
    return _tables_by_lead(
        spark,
        leads_df,
        _tagged(events_df, outcomes_df, selection_df),
        snap,
        arrow_schema(training=True, selection=selection_df is not None),
        lambda dataset: training_table(dataset, definition),
        partitions,
    )


def _tables_by_lead(
    spark: SparkSession,
    leads_df: DataFrame,
    tagged: tuple[DataFrame, dict[str, tuple[list[str], bool]]],
    snapshot_at: pd.Timestamp,
    schema: pa.Schema,
    build: Callable[[Dataset], pd.DataFrame],
    partitions: int | None,
) -> DataFrame:
    """`build`'s table of each lead-hash partition, loaded as the loader loads a dataset snapshotted at
    `snapshot_at` (`_dataset`), in `schema`: what `features` and `training_rows` share."""
    from pyspark.sql.pandas.types import from_arrow_schema

    leads, typed = micros(leads_df, S.CREATED_AT)
    rows, tables = tagged

    def run(leads_pdf: pd.DataFrame, rows_pdf: pd.DataFrame) -> pd.DataFrame:
        from leadscore.features.feature_tables import to_arrow

        dataset = _dataset(leads_pdf, rows_pdf, typed, tables, snapshot_at)
        if dataset is None:
            return schema.empty_table().to_pandas()
        return to_arrow(build(dataset), schema).to_pandas()

    return by_lead(spark, leads, rows, run, from_arrow_schema(schema), partitions)


def data_snapshot(leads_df: DataFrame, events_df: DataFrame, outcomes_df: DataFrame | None) -> pd.Timestamp:
    """The data's last timestamp over leads, events and outcomes, as the loader takes it when dataset.json
    has no `snapshot_at`."""
    tables = [(leads_df, S.CREATED_AT), (events_df, S.TIMESTAMP)]
    if outcomes_df is not None:
        tables.append((outcomes_df, S.OUTCOME_AT))
    return snapshot([(df, column) for df, column in tables if column in df.columns])


def write_training_table(
    spark: SparkSession,
    table: DataFrame,
    out: Path | str,
    definition: QualifiedDefinition,
    snapshot_at: Any,
) -> None:
    """Write `training_rows`' table to the directory `out` (Parquet part files, times as UTC instants to
    the millisecond, replacing what was there) with its `_leadscore.json`, for `leadscore train --table`.
    `out` is a path the driver can write to (the description is written by the driver)."""
    from leadscore.features.feature_tables import write_meta

    key = "spark.sql.parquet.outputTimestampType"
    before = spark.conf.get(key, None)
    spark.conf.set(key, "TIMESTAMP_MILLIS")
    try:
        table.write.mode("overwrite").parquet(str(out))
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
    write_meta(Path(out), definition, utc(snapshot_at), "unlabelled" in table.columns)


def _tagged(
    events_df: DataFrame, outcomes_df: DataFrame | None, selection_df: DataFrame | None
) -> tuple[DataFrame, dict[str, tuple[list[str], bool]]]:
    """The tagged union of the lead-keyed tables given, and per table the columns it had (of those the
    loader reads: a missing one stays missing, for the loader to report) and whether its time was a
    Spark timestamp (sent as microseconds)."""
    from pyspark.sql import functions as F

    given = {"events": events_df, "outcomes": outcomes_df, "selection": selection_df}
    parts, tables = [], {}
    for name, df in given.items():
        if df is None:
            continue
        columns, time = SOURCES[name]
        present = [c for c in columns if c in df.columns]
        part, typed = micros(df.select(*present), time)
        parts.append(part.withColumn(TABLE, F.lit(name)))
        tables[name] = (present, typed)
    id_types = {dict(p.dtypes).get(S.LEAD_ID) for p in parts}
    if len(id_types) > 1:  # e.g. integer ids in one file, text in another: one type for the union
        parts = [p.withColumn(S.LEAD_ID, F.col(S.LEAD_ID).cast("string")) for p in parts]
    union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    return union, tables


def _dataset(
    leads: pd.DataFrame,
    rows: pd.DataFrame,
    typed_leads: bool,
    tables: dict[str, tuple[list[str], bool]],
    snapshot_at: pd.Timestamp,
):
    """One partition's tables split back out of the union and loaded with the loader's rules (None for a
    partition with no rows at all)."""
    import pyarrow as pa

    from leadscore.features.loading import dataset_from_frames

    if leads.empty and rows.empty:
        return None
    leads = leads.drop(columns=[PART])
    if typed_leads:
        from_micros(leads, S.CREATED_AT)
    frames: dict[str, pd.DataFrame] = {}
    for name, (columns, typed) in tables.items():
        frame = rows.loc[rows[TABLE] == name, columns].reset_index(drop=True)
        if typed:
            from_micros(frame, SOURCES[name][1])
        frames[name] = frame
    return dataset_from_frames(
        leads,
        pa.Table.from_pandas(frames["events"], preserve_index=False),
        frames.get("outcomes"),
        snapshot_at=snapshot_at,
        selection=frames.get("selection"),
    )
