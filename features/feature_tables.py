"""The two feature tables of a loaded dataset, one row per (lead, moment): every lead at one moment
(`leadscore features`), and the training table (`leadscore train`: its rows, labels and features).

Both are computed from one `Dataset` and depend on each lead's own rows only (and the dataset's snapshot),
so the same functions give the same rows on a whole dataset, on one lead-hash shard of it, or on one
lead-hash partition on Spark (`leadscore.spark`).

A training table on disk is a directory of Parquet part files (`leadscore features --training`, locally
or on Spark) with `_leadscore.json` beside them: the qualified-lead definition it was built for and the
data's snapshot, which `leadscore train --table` reads back (docs/scale.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from leadscore.features import catalog
from leadscore.features import schema as S
from leadscore.features.frames import feature_frame
from leadscore.features.labels import QualifiedDefinition, training_rows
from leadscore.features.loading import Dataset

# the columns of a training table before its features; `propensity` and `unlabelled` only when the data has
# a selection table (`labels.with_propensity`)
ROW_COLUMNS = (S.LEAD_ID, "as_of", "moment", "label", "propensity", "unlabelled")


def moment_table(dataset: Dataset, moment: pd.Timestamp) -> pd.DataFrame:
    """lead_id, as_of, then the catalogue features of every lead created before `moment`."""
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


def training_table(dataset: Dataset, definition: QualifiedDefinition) -> pd.DataFrame:
    """Every candidate training row of `definition` (`labels.training_rows`, unlabelled ones kept and
    flagged when the data has a selection table), sorted by (as_of, lead_id), with its catalogue features:
    what `model.train.train` fits on, and what `leadscore features --training` writes."""
    rows = training_rows(dataset, definition, keep_unlabelled=True)
    features = feature_frame(dataset, rows)
    return pd.concat([rows, features[list(catalog.BY_NAME)]], axis=1)


TABLE_META = "_leadscore.json"  # Spark's and Arrow's dataset readers skip files that start with "_"
TABLE_KIND = "leadscore.training_table"


def arrow_schema(training: bool, selection: bool = False) -> pa.Schema:
    """The columns and types of a moment table (`training` False) or a training table (with
    `propensity` and `unlabelled` when the data has a selection table): what both engines write."""
    fields = [pa.field(S.LEAD_ID, pa.string()), pa.field("as_of", pa.timestamp("ms", tz="UTC"))]
    if training:
        fields += [pa.field("moment", pa.string()), pa.field("label", pa.int8())]
        if selection:
            fields += [pa.field("propensity", pa.float64()), pa.field("unlabelled", pa.bool_())]
    fields += [
        pa.field(f.name, pa.string() if f.kind == "categorical" else pa.float64()) for f in catalog.FEATURES
    ]
    return pa.schema(fields)


def to_arrow(table: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns and types, one chunk per column (a categorical feature with
    no value in a small part is still a string column, not Arrow's null type)."""
    return pa.Table.from_pandas(table[schema.names], schema=schema, preserve_index=False).combine_chunks()


def write_meta(
    out: Path, definition: QualifiedDefinition, snapshot_at: pd.Timestamp, selection: bool
) -> None:
    """`_leadscore.json` in the training table directory `out`."""
    meta = {
        "kind": TABLE_KIND,
        "definition": definition.to_dict(),
        "snapshot_at": pd.Timestamp(snapshot_at).isoformat(),
        "selection": selection,
    }
    (Path(out) / TABLE_META).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(path: Path) -> dict[str, Any]:
    """The `_leadscore.json` of a training table directory; ValueError if `path` is not one."""
    meta_path = Path(path) / TABLE_META
    if not meta_path.is_file():
        raise ValueError(
            f"{path} is not a training table: no {TABLE_META} in it (write one with "
            "`leadscore features --training`, locally or with --engine spark)"
        )
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if meta.get("kind") != TABLE_KIND:
        raise ValueError(f"{meta_path}: not a leadscore training table description")
    return meta


def sampled_leads(lead_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the leads in a seeded `fraction` of all leads: a hash of (lead id, seed) below `fraction`,
    so a lead is in or out with all its rows, whatever the order or the partitioning of the table."""
    salted = pd.Series(lead_ids, dtype=object).astype(str) + f"|sample|{seed}"
    u = pd.util.hash_pandas_object(salted, index=False).to_numpy() / np.float64(2**64)
    return np.asarray(u < fraction, dtype=bool)


def read_training_table(
    path: Path, fraction: float = 1.0, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A training table directory's rows (all, or the rows of a seeded `fraction` of its leads, read part
    by part so only the sample is held), sorted by (as_of, lead_id) as `training_table` sorts them, and
    its `_leadscore.json`."""
    import pyarrow.dataset as pads

    if not 0 < fraction <= 1:
        raise ValueError(f"the sample fraction must be in (0, 1], not {fraction}")
    meta = read_meta(path)
    schema = arrow_schema(training=True, selection=bool(meta.get("selection")))
    data = pads.dataset(str(path), format="parquet")
    missing = [n for n in schema.names if n not in data.schema.names]
    if missing:
        raise ValueError(f"{path}: the training table has no column {', '.join(map(repr, missing))}")
    pieces = []
    for batch in data.to_batches(columns=schema.names):
        t = pa.Table.from_batches([batch]).cast(schema)
        if fraction < 1:
            ids = t.column(S.LEAD_ID).to_numpy(zero_copy_only=False)
            t = t.filter(pa.array(sampled_leads(ids, fraction, seed)))
        pieces.append(t)
    whole = pa.concat_tables(pieces) if pieces else schema.empty_table()
    table = whole.to_pandas().sort_values(["as_of", S.LEAD_ID], kind="stable", ignore_index=True)
    return table, meta
