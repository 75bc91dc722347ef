"""The live path: features for leads sent in a request (attributes and events as plain dicts), no pandas.

It turns the request into the same arrays the batch path builds and calls the same `build.build`, so a
live score and a batch score of the same lead at the same moment are equal (tests/features prove it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np

from leadscore.features import build, schema as S


def to_ms(value: datetime | str) -> int:
    """Milliseconds since the Unix epoch, UTC. A naive time or a string without an offset is taken as UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000) if value.microsecond % 1000 == 0 else (
        int(value.timestamp() * 1_000_000) // 1000)


def lead_features(leads: Sequence[Mapping], as_of_ms: Sequence[int]) -> dict[str, np.ndarray]:
    """Features for each lead in `leads` at its as_of.

    Each lead is a mapping with `created_at` (datetime or ISO string), the attribute keys of
    `schema.LEAD_ATTRIBUTES` (at the top level or under "attributes"; missing keys are missing values) and
    `events`: a sequence of mappings with
    `type`, `timestamp` and optionally `page`. Events at or after as_of are ignored, as in training.
    """
    n = len(leads)
    created = np.fromiter((to_ms(lead["created_at"]) for lead in leads), dtype=np.int64, count=n)
    attrs = {c: np.array([_attributes(lead).get(c) for lead in leads], dtype=object) for c in S.LEAD_ATTRIBUTES}
    lead_code, ts, types, pages = [], [], [], []
    for i, lead in enumerate(leads):
        for e in lead.get("events") or ():
            lead_code.append(i)
            ts.append(to_ms(e["timestamp"]))
            types.append(build.TYPE_CODE[e["type"]])
            page = e.get("page")
            pages.append(build.PAGE_CODE[page] if page is not None else build.NO_PAGE)
    events = build.EventArrays(
        lead=np.asarray(lead_code, dtype=np.int64),
        ts_ms=np.asarray(ts, dtype=np.int64),
        type_code=np.asarray(types, dtype=np.int16),
        page_code=np.asarray(pages, dtype=np.int16),
    )
    return build.build(build.LeadArrays(created, attrs), events, np.arange(n, dtype=np.int64),
                       np.asarray(as_of_ms, dtype=np.int64))


def _attributes(lead: Mapping) -> Mapping:
    nested = lead.get("attributes")
    return nested if isinstance(nested, Mapping) else lead
