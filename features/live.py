"""The live adapter: features for the leads of a request (attributes and events as plain dicts), no pandas.

A request is a batch of one lead (or of a few): this module only turns the dicts into the arrays
`build.build` takes, the function training and batch scoring call too, so the values are the same by
construction (tests/features/test_batch_vs_single.py checks it end to end, through both adapters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
from leadscore.features import build
from leadscore.features import schema as S
from leadscore.features.events import PAGE_CODE, TYPE_CODE, EventArrays
from leadscore.features.reading import exact_duplicates

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)


def to_ms(value: datetime | str) -> int:
    """Milliseconds since the Unix epoch, UTC (sub-millisecond parts dropped, as a datetime64[ms] cast
    does). A naive time or a string without an offset is taken as UTC. Integer arithmetic: a float
    `timestamp() * 1000` is off by one millisecond for some times (e.g. ...43.174 -> ...43.173)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    d = value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH)
    return (d.days * 86_400 + d.seconds) * 1000 + d.microseconds // 1000


def lead_features(
    leads: Sequence[Mapping[str, Any]], as_of_ms: Sequence[int], drop_duplicates: bool = False
) -> dict[str, np.ndarray]:
    """Features for each lead in `leads` at its as_of, in catalogue order.

    Each lead is a mapping with `created_at` (datetime or ISO string), the attribute keys of
    `schema.LEAD_ATTRIBUTES` (at the top level or under "attributes"; missing keys are missing values) and
    `events`: a sequence of mappings with `type`, `timestamp` and optionally `page`. Events at or after
    as_of are ignored, as in training. `drop_duplicates`: first remove exact duplicate events with the
    loader's rule (`reading.exact_duplicates`), for raw events no loader has seen (the pyfunc's input).
    """
    n = len(leads)
    created = np.fromiter((to_ms(lead["created_at"]) for lead in leads), dtype=np.int64, count=n)
    nested = [_attributes(lead) for lead in leads]
    attrs = {c: np.array([a.get(c) for a in nested], dtype=object) for c in S.LEAD_ATTRIBUTES}
    n_events: list[int] = []
    ts: list[int] = []
    types: list[int] = []
    pages: list[int] = []
    for lead in leads:
        evs = lead.get("events") or ()
        n_events.append(len(evs))
        ts.extend([to_ms(e["timestamp"]) for e in evs])
        types.extend([TYPE_CODE[e["type"]] for e in evs])
        pages.extend([PAGE_CODE[e.get("page")] for e in evs])
    events = EventArrays(
        lead=np.repeat(np.arange(n, dtype=np.int64), n_events),  # lead i's events are the i-th run
        ts_ms=np.asarray(ts, dtype=np.int64),
        type_code=np.asarray(types, dtype=np.int16),
        page_code=np.asarray(pages, dtype=np.int16),
    )
    if drop_duplicates and len(events.lead):
        keep = ~exact_duplicates(events.lead, events.type_code, events.page_code, events.ts_ms)
        if not keep.all():  # order kept: each lead's events are still one run
            events = EventArrays(
                events.lead[keep], events.ts_ms[keep], events.type_code[keep], events.page_code[keep]
            )
    rows = np.arange(n, dtype=np.int64)
    return build.build(
        build.LeadArrays(created, attrs), events, rows, np.asarray(as_of_ms, dtype=np.int64).reshape(n)
    )


def _attributes(lead: Mapping[str, Any]) -> Mapping[str, Any]:
    nested = lead.get("attributes")
    return nested if isinstance(nested, Mapping) else lead
