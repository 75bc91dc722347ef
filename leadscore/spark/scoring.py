"""Batch scoring on Spark (`score`, what `leadscore score --engine spark` runs) and the input of the
MLflow pyfunc under `mlflow.pyfunc.spark_udf` (`pyfunc_input`).

`score` gives exactly what `leadscore score` writes, because it runs the same code: the leads and events
are split into partitions by a hash of the lead id (`partitions.by_lead`), so each lead arrives with all
its events, and each partition is validated by the loader (`loading.dataset_from_frames`: its timestamp
rules, its exact-duplicate removal) and scored by the batch path (`batch.dataset_chunks`,
`batch.score_chunk`). The model is loaded on the driver from the registry as the service loads it (the
bundle alone, its SHA-256 checked: `registry.load_scoring_model`) and its bundle's bytes are shipped to
the executors, which load them with `persist.load` against the same hash: nothing is unpickled.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from leadscore.features import schema as S
from leadscore.spark.partitions import PART, by_lead, from_micros, iso, micros, utc

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from leadscore.model.exploration import Exploration
    from leadscore.model.scoring import ScoringModel

_MODELS: dict[str, ScoringModel] = {}  # per Python worker: the model of each bundle digest, loaded once


def score(
    spark: SparkSession,
    leads_df: DataFrame,
    events_df: DataFrame,
    model_uri: str,
    as_of: Any,
    *,
    top_n: int | None = None,
    partitions: int | None = None,
    exploration: Exploration | None = None,
) -> DataFrame:
    """Every lead of `leads_df` created before `as_of`, scored with the model at `model_uri`: the columns
    and values of `leadscore score` (`model.batch`), one row per lead, in no particular order.

    `leads_df`, `events_df`: the data model's leads and events tables (docs/data-model.md), times as
    Spark timestamps or ISO-8601 strings. `partitions`: how many lead-hash groups (each is one pandas
    frame in one Python worker: keep it to a few million events); default twice the default parallelism.
    `exploration`: the handoff draw (default: the settings', as `leadscore score`)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from leadscore.model import persist
    from leadscore.model.batch import empty_table
    from leadscore.model.reason_groups import TOP_N
    from leadscore.model.registry import load_scoring_model

    top = TOP_N if top_n is None else top_n
    moment = utc(as_of)
    if exploration is None:
        from leadscore.settings import get_settings

        exploration = get_settings().exploration()
    model = load_scoring_model(model_uri)
    with tempfile.TemporaryDirectory(prefix="leadscore-spark-") as tmp:
        bundle = persist.save(model, Path(tmp) / "bundle")
        files = {name: (bundle / name).read_bytes() for name in persist.SCORING_FILES}
        digest = persist.digest(bundle)
    leads, lead_micros = micros(leads_df, S.CREATED_AT)
    events, event_micros = micros(
        events_df.select(*[c for c in S.EVENT_COLUMNS if c in events_df.columns]), S.TIMESTAMP
    )
    version, times = model.version, {"leads": lead_micros, "events": event_micros}

    def run(leads_pdf: pd.DataFrame, events_pdf: pd.DataFrame) -> pd.DataFrame:
        return score_partition(
            _model(files, digest, version), leads_pdf, events_pdf, moment, top, exploration, times
        )

    schema = from_arrow_schema(empty_table(model, top).schema)
    return by_lead(spark, leads, events, run, schema, partitions)


def score_partition(
    model: ScoringModel,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    top_n: int,
    exploration: Exploration,
    typed: dict[str, bool],
) -> pd.DataFrame:
    """One lead-hash partition through the loader's checks and the batch path (what `score` runs)."""
    import pyarrow as pa

    from leadscore.features.loading import dataset_from_frames
    from leadscore.model.batch import dataset_chunks, empty_table, lead_rows, score_chunk

    leads, events = leads.drop(columns=[PART]), events.drop(columns=[PART])
    if typed["leads"]:
        from_micros(leads, S.CREATED_AT)
    if typed["events"]:
        from_micros(events, S.TIMESTAMP)
    dataset = dataset_from_frames(
        leads, pa.Table.from_pandas(events, preserve_index=False), snapshot_at=as_of
    )
    rows = lead_rows(dataset, as_of)
    tables = [
        score_chunk(model, values, ids, moments, model.sentences, top_n, exploration)
        for _, values, ids, moments in dataset_chunks(dataset, rows)
    ]
    # one chunk per column: past `CHUNK_LEADS` the concatenation is chunked, and pandas 3 keeps chunked
    # string columns that pyspark cannot send back
    return pa.concat_tables(tables or [empty_table(model, top_n)]).combine_chunks().to_pandas()


def pyfunc_input(leads_df: DataFrame, events_df: DataFrame, as_of: Any) -> DataFrame:
    """The MLflow pyfunc's input (`model.pyfunc`) for every lead of `leads_df` created before `as_of`:
    one row per lead, its events an `array<struct<type, timestamp, page>>` (null when it has none), times
    as ISO-8601 with their offset, `as_of` in every row. Then, with `env_manager="local"` or not:
    `df.withColumn("s", mlflow.pyfunc.spark_udf(spark, uri)())`.

    Events of leads not in `leads_df` are left out; the pyfunc removes exact duplicates (the loader's
    rule), so none are removed here."""
    from pyspark.sql import functions as F

    moment = utc(as_of)
    iso_moment = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    created = iso(leads_df, S.CREATED_AT)
    events = events_df.select(
        F.col(S.LEAD_ID).cast("string").alias(S.LEAD_ID),
        F.struct(
            F.col(S.EVENT_TYPE).cast("string").alias("type"),
            iso(events_df, S.TIMESTAMP).alias("timestamp"),
            (F.col(S.PAGE) if S.PAGE in events_df.columns else F.lit(None)).cast("string").alias("page"),
        ).alias("event"),
    )
    grouped = events.groupBy(S.LEAD_ID).agg(F.collect_list("event").alias("events"))
    leads = leads_df.select(
        F.col(S.LEAD_ID).cast("string").alias(S.LEAD_ID),
        created.alias(S.CREATED_AT),
        *[
            (F.col(a) if a in leads_df.columns else F.lit(None)).cast("string").alias(a)
            for a in S.LEAD_ATTRIBUTES
        ],
    ).where(F.to_timestamp(F.col(S.CREATED_AT)) < F.lit(moment.to_pydatetime()))
    return leads.join(grouped, S.LEAD_ID, "left").withColumn("as_of", F.lit(iso_moment))


def _model(files: dict[str, bytes], digest: str, version: str | None) -> ScoringModel:
    """The model of a shipped bundle, loaded once per Python worker (against its SHA-256)."""
    model = _MODELS.get(digest)
    if model is None:
        from leadscore.model import persist

        with tempfile.TemporaryDirectory(prefix="leadscore-bundle-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            model = persist.load(Path(tmp), expected_sha256=digest)
        model.version = version
        _MODELS[digest] = model
    return model
