"""Batch adapters: a loaded `Dataset` and a table of rows (lead_id, as_of) in, a feature table out.

This is the path for training and batch scoring; it turns pandas columns into the arrays `build.build`
takes and calls it chunk by chunk of leads, so memory stays bounded on millions of leads.
`iter_feature_chunks` yields the chunks (batch scoring writes each one out and forgets it);
`feature_frame` concatenates them (training).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from leadscore.features import build, catalog
from leadscore.features import schema as S
from leadscore.features.events import EventArrays
from leadscore.features.loading import Dataset

CHUNK_LEADS = 125_000  # per chunk ~1 GB of temporaries at 5 rows per lead


def ms(ts: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 milliseconds since the Unix epoch."""
    return np.asarray(ts.astype("datetime64[ms, UTC]").to_numpy(dtype="datetime64[ms]"), dtype=np.int64)


def lead_arrays(leads: pd.DataFrame) -> build.LeadArrays:
    attrs = {
        c: leads[c].to_numpy(dtype=object) if c in leads.columns else np.full(len(leads), None, object)
        for c in S.LEAD_ATTRIBUTES
    }
    return build.LeadArrays(created_ms=ms(leads[S.CREATED_AT]), attributes=attrs)


def _codes(values: pd.Series, categories: Sequence[str]) -> np.ndarray:
    return np.asarray(pd.Categorical(values, categories=categories).codes, dtype=np.int16)


def _lead_codes(leads: pd.Index, ids: pd.Series) -> np.ndarray:
    """Position of each id in `leads` (-1 if unknown), hashing each distinct id once."""
    if isinstance(ids.dtype, pd.CategoricalDtype) and ids.cat.categories.equals(leads):
        return np.asarray(ids.cat.codes, dtype=np.int64)  # `load_dataset`'s events: codes are lead rows
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    pos = leads.get_indexer(pd.Index(uniques, dtype=object))
    return np.asarray(np.where(codes >= 0, pos[np.maximum(codes, 0)] if len(pos) else -1, -1), dtype=np.int64)


def iter_feature_chunks(
    dataset: Dataset, rows: pd.DataFrame, chunk_leads: int = CHUNK_LEADS
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(positions into `rows`, catalogue features of those rows) for one chunk of leads at a time.

    Every row of `rows` (columns lead_id, as_of) is in exactly one chunk; within a chunk, rows keep their
    order in `rows`. Raises KeyError for a row whose lead is not in the dataset.
    """
    leads = dataset.leads.set_index(S.LEAD_ID, drop=False)
    row_lead_all = _lead_codes(leads.index, rows[S.LEAD_ID])
    if (row_lead_all < 0).any():
        unknown = rows[S.LEAD_ID].iloc[int(np.flatnonzero(row_lead_all < 0)[0])]
        raise KeyError(f"row for unknown lead {unknown!r}")
    as_of_all = ms(rows["as_of"])
    events = dataset.events
    ev_lead_all = _lead_codes(leads.index, events[S.LEAD_ID])
    # the event columns as arrays once; each chunk takes its slice of a lead-sorted order
    ev_order = np.argsort(ev_lead_all, kind="stable")
    ev_lead_sorted = ev_lead_all[ev_order]
    ev_ts = ms(events[S.TIMESTAMP])
    ev_type = _codes(events[S.EVENT_TYPE], S.EVENT_TYPES)
    ev_page = _codes(events[S.PAGE], S.PAGE_KINDS)
    row_order = np.argsort(row_lead_all, kind="stable")
    row_lead_sorted = row_lead_all[row_order]
    for start in range(0, len(leads), chunk_leads):
        stop = min(start + chunk_leads, len(leads))
        r0, r1 = np.searchsorted(row_lead_sorted, [start, stop])
        if r0 == r1:
            continue
        pos = np.sort(row_order[r0:r1])
        e0, e1 = np.searchsorted(ev_lead_sorted, [start, stop])
        take = ev_order[e0:e1]
        arrays = EventArrays(
            lead=ev_lead_sorted[e0:e1] - start,
            ts_ms=ev_ts[take],
            type_code=ev_type[take],
            page_code=ev_page[take],
        )
        values = build.build(
            lead_arrays(leads.iloc[start:stop]), arrays, row_lead_all[pos] - start, as_of_all[pos]
        )
        yield pos, values


def feature_frame(
    dataset: Dataset, rows: pd.DataFrame, progress: Callable[[int], None] | None = None
) -> pd.DataFrame:
    """Catalogue features for each row of `rows` (columns lead_id, as_of), index aligned with `rows`."""
    names = list(catalog.BY_NAME)
    if len(rows) == 0:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in names}, index=rows.index)
    columns: dict[str, np.ndarray] = {}
    for pos, values in iter_feature_chunks(dataset, rows):
        for name in names:
            v = values[name]
            if name not in columns:
                columns[name] = np.empty(len(rows), dtype=v.dtype)
            columns[name][pos] = v
        if progress:
            progress(len(pos))
    return pd.DataFrame(columns, index=rows.index, copy=False)
