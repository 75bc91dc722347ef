"""Write a `Dataset` in the canonical layout (docs/data-model.md) that `load_dataset` reads back:
leads.parquet, events.parquet, outcomes.parquet, selection.parquet when the dataset has a selection table,
and dataset.json with `snapshot_at` (and `selection_version` with a selection table)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from leadscore.features import schema as S
from leadscore.features.loading import SELECTION_VERSION, Dataset

_UTC_MS = pa.timestamp("ms", tz="UTC")


def _iso(t: pd.Timestamp) -> str:
    return str(pd.Timestamp(t).tz_convert("UTC").isoformat()).replace("+00:00", "Z")


def _frame(df: pd.DataFrame, columns: tuple[str, ...], times: tuple[str, ...]) -> pa.Table:
    """`columns` first (strings, or UTC millisecond timestamps for `times`), then any custom columns."""
    extra = [c for c in df.columns if c not in columns]
    fields, arrays = [], []
    for c in (*columns, *extra):
        if c in times:
            values = pd.to_datetime(df[c], utc=True).astype("datetime64[ms, UTC]")
            arrays.append(pa.array(values, type=_UTC_MS))
            fields.append(pa.field(c, _UTC_MS))
        else:
            col = df[c] if c in df.columns else pd.Series(None, index=df.index, dtype=object)
            values = [None if pd.isna(v) else str(v) for v in col.astype(object)]
            arrays.append(pa.array(values, type=pa.string()))
            fields.append(pa.field(c, pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_dataset(dataset: Dataset, out_dir: Path | str) -> Path:
    """Write `dataset` into `out_dir` (created if needed; its parquet tables are replaced, and the loader
    prefers them to CSV files of the same name)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(_frame(dataset.leads, S.LEAD_COLUMNS, (S.CREATED_AT,)), out / "leads.parquet")
    pq.write_table(_frame(dataset.events, S.EVENT_COLUMNS, (S.TIMESTAMP,)), out / "events.parquet")
    pq.write_table(_frame(dataset.outcomes, S.OUTCOME_COLUMNS, (S.OUTCOME_AT,)), out / "outcomes.parquet")
    if dataset.selection is not None:
        sel = dataset.selection
        pq.write_table(
            pa.table(
                {
                    S.LEAD_ID: pa.array([str(v) for v in sel[S.LEAD_ID]], pa.string()),
                    S.HANDED_AT: pa.array(
                        pd.to_datetime(sel[S.HANDED_AT], utc=True).astype("datetime64[ms, UTC]"), type=_UTC_MS
                    ),
                    S.PROPENSITY: pa.array(sel[S.PROPENSITY].to_numpy(dtype="float64"), pa.float64()),
                }
            ),
            out / "selection.parquet",
        )
    else:  # a table from an earlier write would otherwise be read back with this dataset
        (out / "selection.parquet").unlink(missing_ok=True)
    meta: dict[str, object] = {"snapshot_at": _iso(dataset.snapshot_at)}
    if dataset.selection is not None:  # the selection table's layout (docs/data-model.md, "Versions")
        meta["selection_version"] = SELECTION_VERSION
    (out / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out
