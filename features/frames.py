"""Batch adapters: a loaded `Dataset` and a table of rows (lead_id, as_of) in, a feature table out.

This is the path for training and batch scoring; it turns pandas columns into the arrays `build.build`
takes and calls it chunk by chunk of leads, so memory stays bounded on millions of leads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from leadscore.features import build, schema as S
from leadscore.features.loading import Dataset

CHUNK_LEADS = 250_000


def ms(ts: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 milliseconds since the Unix epoch."""
    return ts.astype("datetime64[ms, UTC]").to_numpy(dtype="datetime64[ms]").astype(np.int64)


def lead_arrays(leads: pd.DataFrame) -> build.LeadArrays:
    attrs = {c: leads[c].to_numpy(dtype=object) if c in leads.columns else np.full(len(leads), None, object)
             for c in S.LEAD_ATTRIBUTES}
    return build.LeadArrays(created_ms=ms(leads[S.CREATED_AT]), attributes=attrs)


def event_arrays(events: pd.DataFrame, lead_index: pd.Index) -> build.EventArrays:
    type_code = pd.Categorical(events[S.EVENT_TYPE], categories=S.EVENT_TYPES).codes.astype(np.int16)
    page_code = pd.Categorical(events[S.PAGE], categories=S.PAGE_KINDS).codes.astype(np.int16)
    return build.EventArrays(
        lead=lead_index.get_indexer(events[S.LEAD_ID]).astype(np.int64),
        ts_ms=ms(events[S.TIMESTAMP]),
        type_code=type_code,
        page_code=page_code,
    )


def feature_frame(dataset: Dataset, rows: pd.DataFrame,
                  progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Catalogue features for each row of `rows` (columns lead_id, as_of), index aligned with `rows`."""
    leads = dataset.leads.set_index(S.LEAD_ID, drop=False)
    parts: list[pd.DataFrame] = []
    row_lead_all = leads.index.get_indexer(rows[S.LEAD_ID])
    if (row_lead_all < 0).any():
        unknown = rows[S.LEAD_ID][row_lead_all < 0].iloc[0]
        raise KeyError(f"row for unknown lead {unknown!r}")
    ev_lead_all = leads.index.get_indexer(dataset.events[S.LEAD_ID])
    as_of_all = ms(rows["as_of"])
    for start in range(0, len(leads), CHUNK_LEADS):
        stop = min(start + CHUNK_LEADS, len(leads))
        in_rows = (row_lead_all >= start) & (row_lead_all < stop)
        if not in_rows.any():
            continue
        in_events = (ev_lead_all >= start) & (ev_lead_all < stop)
        chunk_leads = leads.iloc[start:stop]
        ev = dataset.events[in_events]
        arrays = build.EventArrays(
            lead=(ev_lead_all[in_events] - start).astype(np.int64),
            ts_ms=ms(ev[S.TIMESTAMP]),
            type_code=pd.Categorical(ev[S.EVENT_TYPE], categories=S.EVENT_TYPES).codes.astype(np.int16),
            page_code=pd.Categorical(ev[S.PAGE], categories=S.PAGE_KINDS).codes.astype(np.int16),
        )
        values = build.build(lead_arrays(chunk_leads), arrays, row_lead_all[in_rows] - start, as_of_all[in_rows])
        parts.append(pd.DataFrame(values, index=rows.index[in_rows]))
        if progress:
            progress(int(in_rows.sum()))
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in build.catalog.BY_NAME}, index=rows.index)
    return pd.concat(parts).loc[rows.index]
