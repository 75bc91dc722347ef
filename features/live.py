"""The live path: features for leads sent in a request (attributes and events as plain dicts), no pandas.

It computes exactly what the batch path (`build.build`) computes for the same lead at the same moment
(tests/features prove it), but shaped for small requests: the request's events are counted into every
channel and window in one compiled pass (`_count`), with no sorting and no per-feature numpy calls; a
batch of millions of rows goes through `build.build`, whose sweep expects rows and events sorted by lead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import numpy as np
from leadscore.features import build, catalog
from leadscore.features import schema as S
from leadscore.features.catalog import CHANNELS, DAY_MS, ENGAGEMENT, HIGH_INTENT, WINDOWS
from numba import njit

_MAX_REL: Final = (1 << build.TS_BITS) - 1
_N_PAGES: Final = len(S.PAGE_KINDS)
_PAGE_SLOT: Final = {None: 0, **{page: code + 1 for page, code in build.PAGE_CODE.items()}}  # no page -> 0
_ORDER: Final = tuple(spec.name for spec in catalog.FEATURES)


def _channel_table() -> np.ndarray:
    """(event type, page code + 1, channel) -> the event counts in that channel; page code -1 = no page."""
    table = np.zeros((len(S.EVENT_TYPES), _N_PAGES + 1, len(CHANNELS)), dtype=bool)
    for t, type_name in enumerate(S.EVENT_TYPES):
        for p in range(-1, _N_PAGES):
            page = S.PAGE_KINDS[p] if p >= 0 else None
            web = type_name == "web_visit"
            for c, name in enumerate(CHANNELS):
                if name.startswith("visit_"):
                    hit = web and page == name.removeprefix("visit_")
                elif name == "engagement":
                    hit = type_name in ENGAGEMENT
                elif name == "high_intent":
                    hit = type_name in HIGH_INTENT or (web and page == "pricing")
                else:
                    hit = type_name == name
                table[t, p + 1, c] = hit
    return table


_CHANNEL_TABLE: Final = _channel_table()
_CH: Final = {name: c for c, name in enumerate(CHANNELS)}
# window slots: 0 = all time before as_of, then one per catalogue window
_SLOT: Final = {None: 0, **{w: k + 1 for k, w in enumerate(WINDOWS)}}
_WINDOW_MS: Final = np.array([0, *(w * DAY_MS for w in WINDOWS)], dtype=np.int64)
_SINCE: Final = tuple(
    (c, f"days_since_{name}") for c, name in enumerate(CHANNELS) if f"days_since_{name}" in catalog.BY_NAME
)
_COUNTED: Final = tuple(
    (spec.name, _CH[spec.name.removesuffix(f"_{w}d")], _SLOT[w])
    for spec in catalog.FEATURES
    for w in WINDOWS
    if spec.name.endswith(f"_{w}d") and spec.name.removesuffix(f"_{w}d") in _CH
) + tuple(
    (spec.name, _CH[spec.name.removesuffix("_total")], 0)
    for spec in catalog.FEATURES
    if spec.name.endswith("_total") and spec.name.removesuffix("_total") in _CH
)


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


def lead_features(leads: Sequence[Mapping], as_of_ms: Sequence[int]) -> dict[str, np.ndarray]:
    """Features for each lead in `leads` at its as_of.

    Each lead is a mapping with `created_at` (datetime or ISO string), the attribute keys of
    `schema.LEAD_ATTRIBUTES` (at the top level or under "attributes"; missing keys are missing values) and
    `events`: a sequence of mappings with
    `type`, `timestamp` and optionally `page`. Events at or after as_of are ignored, as in training.
    """
    n = len(leads)
    as_of = np.asarray(as_of_ms, dtype=np.int64).reshape(n)
    created = np.fromiter((to_ms(lead["created_at"]) for lead in leads), dtype=np.int64, count=n)
    nested = [_attributes(lead) for lead in leads]
    attrs = {c: np.array([a.get(c) for a in nested], dtype=object) for c in S.LEAD_ATTRIBUTES}
    n_events, ts, types, pages = [], [], [], []
    type_code, page_code = build.TYPE_CODE, _PAGE_SLOT
    for lead in leads:
        evs = lead.get("events") or ()
        n_events.append(len(evs))
        ts.extend([to_ms(e["timestamp"]) for e in evs])
        types.extend([type_code[e["type"]] for e in evs])
        pages.extend([page_code[e.get("page")] for e in evs])
    rows = np.arange(n, dtype=np.int64)
    values = build.profile_features(build.LeadArrays(created, attrs), rows, as_of)
    values.update(
        _event_features(
            n,
            np.asarray(n_events, dtype=np.int64),
            np.asarray(ts, dtype=np.int64),
            np.asarray(types, dtype=np.int64),
            np.asarray(pages, dtype=np.int64),
            as_of,
        )
    )
    return {name: values[name] for name in _ORDER}


@njit(cache=True, nogil=True)
def _count(
    n_events, ts_ms, types, pages, as_of_ms, table, window_ms, epoch_ms, max_rel, day_ms, out
):  # pragma: no cover - compiled
    """Lead i's event features into column i of `out` (zeros on entry): row c * K + k holds the lead's events
    in channel c stamped before its as_of and, for k > 0, at or after as_of - window_ms[k] (k = 0: all
    time); row C * K + c the whole days since the last of them (NaN: none). K = len(window_ms), C = the
    channels. Times are milliseconds since `epoch_ms`, clipped to [0, max_rel] exactly as `build` clips
    its keys. The events are those of lead 0, then of lead 1, ... (`n_events` each)."""
    n_ch = table.shape[2]
    n_slots = window_ms.shape[0]
    lo = np.zeros(n_slots, dtype=np.int64)
    last = np.empty(n_ch, dtype=np.int64)
    e = 0
    for i in range(n_events.shape[0]):
        hi = min(max(as_of_ms[i] - epoch_ms, 0), max_rel)
        for k in range(1, n_slots):
            lo[k] = min(max(as_of_ms[i] - window_ms[k] - epoch_ms, 0), max_rel)
        last[:] = -1
        for _ in range(n_events[i]):
            t = min(max(ts_ms[e] - epoch_ms, 0), max_rel)
            if t < hi:
                for c in range(n_ch):
                    if table[types[e], pages[e], c]:
                        for k in range(n_slots):
                            if t >= lo[k]:
                                out[c * n_slots + k, i] += 1.0
                        if t > last[c]:
                            last[c] = t
            e += 1
        for c in range(n_ch):
            out[n_ch * n_slots + c, i] = (
                np.floor((as_of_ms[i] - (last[c] + epoch_ms)) / day_ms) if last[c] >= 0 else np.nan
            )


def _event_features(
    n: int,
    n_events: np.ndarray,
    ts_ms: np.ndarray,
    types: np.ndarray,
    pages: np.ndarray,
    as_of_ms: np.ndarray,
) -> dict[str, np.ndarray]:
    """`build.event_features` for one row per lead, computed in one compiled pass over the events (`_count`).

    The events are those of lead 0, then of lead 1, ... (`n_events` each)."""
    n_ch, n_slots = len(CHANNELS), len(_WINDOW_MS)
    M = np.zeros((n_ch * n_slots + n_ch, n), dtype=np.float64)  # one contiguous row per feature
    _count(
        n_events,
        ts_ms,
        types,
        pages,
        as_of_ms,
        _CHANNEL_TABLE,
        _WINDOW_MS,
        build.EPOCH_MS,
        _MAX_REL,
        DAY_MS,
        M,
    )
    out: dict[str, np.ndarray] = {name: M[n_ch * n_slots + c] for c, name in _SINCE}

    def cnt(channel: str, window: int | None) -> np.ndarray:
        return M[_CH[channel] * n_slots + _SLOT[window]]

    for name, c, k in _COUNTED:
        out[name] = M[c * n_slots + k]
    out.update(build.derived_features(cnt))
    return out


def _attributes(lead: Mapping) -> Mapping:
    nested = lead.get("attributes")
    return nested if isinstance(nested, Mapping) else lead
