"""Event features: the one implementation of every event feature, for a request and for 1M leads.

A row is (lead, as_of); its event features come from the lead's events stamped strictly before as_of.
`event_features` codes the events (type, page -> the channels an event counts in, as bits), groups them
by lead, orders the rows by (lead, as_of) when they are not already, and runs the compiled kernel
(`counting.count_rows`) over them, on several cores for large batches. The kernel's output is one
contiguous row per feature, which becomes the returned dict without a copy.

Callers: `build.build` (all features for rows), which the batch adapter (`frames`, pandas in) and the live
adapter (`live`, a request's dicts in: a batch of one lead, or of a few) both call.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from leadscore.features import catalog
from leadscore.features.catalog import CHANNELS, DAY_MS, ENGAGEMENT, HIGH_INTENT, WINDOWS
from leadscore.features.counting import (
    EPOCH_MS,
    MAX_REL_MS,
    TS_BITS,
    Codes,
    Floats,
    Int64s,
    count_rows,
    is_grouped,
)
from leadscore.features.schema import EVENT_TYPES, PAGE_KINDS

MAX_LEADS_PER_BATCH: Final = 1 << (63 - TS_BITS)  # lead codes must stay below this in one call

TYPE_CODE: Final = {t: i for i, t in enumerate(EVENT_TYPES)}
# None (no page) -> -1
PAGE_CODE: Final[dict[str | None, int]] = {p: i - 1 for i, p in enumerate((None, *PAGE_KINDS))}
# a call with at least twice this many rows runs on several cores, split at lead boundaries (the kernel
# drops the GIL); fewer rows do not pay for the threads
ROWS_PER_THREAD: Final = 100_000

Grouped = tuple[Int64s, Int64s, Codes, Codes]  # events grouped by lead: lead, ts_ms, type_code, page_code


@dataclass(frozen=True, slots=True)
class EventArrays:
    lead: Codes  # lead code (an index into the leads of the call)
    ts_ms: Codes  # ms since the Unix epoch, UTC
    type_code: Codes  # index into schema.EVENT_TYPES
    page_code: Codes  # index into schema.PAGE_KINDS, or -1 (no page)


def _in_channel(type_name: str, page: str | None, channel: str) -> bool:
    """Whether an event of this type (on this page, for a web visit) counts in `channel`."""
    web = type_name == "web_visit"
    if channel.startswith("visit_"):
        return web and page == channel.removeprefix("visit_")
    if channel == "engagement":
        return type_name in ENGAGEMENT
    if channel == "high_intent":
        return type_name in HIGH_INTENT or (web and page == "pricing")
    return type_name == channel


def _channel_bits() -> Int64s:
    """(type code, page code + 1) -> bit c set when such an event counts in CHANNELS[c]."""
    bits = np.zeros((len(EVENT_TYPES), len(PAGE_KINDS) + 1), dtype=np.int64)
    for t, type_name in enumerate(EVENT_TYPES):
        for p, page in enumerate((None, *PAGE_KINDS)):
            for c, channel in enumerate(CHANNELS):
                if _in_channel(type_name, page, channel):
                    bits[t, p] |= 1 << c
    return bits


CHANNEL_BITS: Final = _channel_bits()
_WINDOW_MS: Final = np.array([w * DAY_MS for w in WINDOWS], dtype=np.int64)
_CH: Final = {name: c for c, name in enumerate(CHANNELS)}
# The kernel's output, one contiguous row per feature: a count per (channel, window slot), slot 0 being all
# time before as_of and then one per catalogue window; the days since each channel's last event; the rates.
_N_SLOTS: Final = 1 + len(WINDOWS)
_N_COUNTS: Final = len(CHANNELS) * _N_SLOTS
_RATES: Final = ("open_rate_30d", "click_rate_30d", "open_rate_trend", "activity_trend")
_N_ROWS: Final = _N_COUNTS + len(CHANNELS) + len(_RATES)
_CORES: Final = os.cpu_count() or 1


def _count_row(channel: str, window: int | None) -> int:
    """The output row of `channel`'s events in the last `window` days (None: all time)."""
    return _CH[channel] * _N_SLOTS + (0 if window is None else 1 + WINDOWS.index(window))


def _output_rows() -> tuple[tuple[str, int], ...]:
    """(feature, output row) for every feature the kernel computes."""
    rows = []
    for spec in catalog.FEATURES:
        for window in (*WINDOWS, None):
            suffix = "_total" if window is None else f"_{window}d"
            channel = spec.name.removesuffix(suffix)
            if spec.name.endswith(suffix) and channel in _CH:
                rows.append((spec.name, _count_row(channel, window)))
        channel = spec.name.removeprefix("days_since_")
        if spec.name.startswith("days_since_") and channel in _CH:
            rows.append((spec.name, _N_COUNTS + _CH[channel]))
    rows += [(name, _N_COUNTS + len(CHANNELS) + j) for j, name in enumerate(_RATES)]
    return tuple(rows)


_OUTPUT_ROWS: Final = _output_rows()
# the counts the rates are made of, in the order `counting._rates` reads them
_RATE_INPUTS: Final = np.array(
    [
        _count_row("email_sent", 30),
        _count_row("email_sent", 90),
        _count_row("email_opened", 30),
        _count_row("email_opened", 90),
        _count_row("email_clicked", 30),
        _count_row("engagement", 7),
        _count_row("engagement", 30),
    ],
    dtype=np.int64,
)


def _run_count(ev: Grouped, row_lead: Int64s, as_of: Int64s, order: Int64s, out: Floats) -> None:
    """`count_rows` over all rows into `out`, in one part per core of at least ROWS_PER_THREAD rows, split at
    lead boundaries (the kernel drops the GIL)."""
    n = len(order)
    parts = min(_CORES, n // ROWS_PER_THREAD)

    def run(start: int, stop: int) -> None:
        count_rows(
            *ev, row_lead, as_of, order, start, stop, CHANNEL_BITS, _WINDOW_MS, _RATE_INPUTS, out
        )  # fmt: skip

    if parts <= 1:
        run(0, n)
        return
    sorted_lead = row_lead[order]
    cuts = [0, *(int(np.searchsorted(sorted_lead, sorted_lead[n * k // parts])) for k in range(1, parts)), n]
    with ThreadPoolExecutor(max_workers=parts) as pool:
        list(pool.map(run, cuts[:-1], cuts[1:]))


def _grouped(ev: EventArrays) -> Grouped:
    """The events grouped by lead (stable: their order within a lead is kept), as the kernel reads them."""
    lead = np.asarray(ev.lead, dtype=np.int64)
    ts = np.asarray(ev.ts_ms, dtype=np.int64)
    if not is_grouped(lead):
        by_lead = np.argsort(lead, kind="stable")
        return lead[by_lead], ts[by_lead], ev.type_code[by_lead], ev.page_code[by_lead]
    return lead, ts, ev.type_code, ev.page_code


def event_features(ev: EventArrays, row_lead: npt.ArrayLike, as_of_ms: npt.ArrayLike) -> dict[str, Floats]:
    """Engagement, intent and pressure features for each row from events stamped strictly before as_of.

    Events may come in any order; rows too (the values are aligned with the rows as given)."""
    lead = np.asarray(row_lead, dtype=np.int64)
    as_of = np.asarray(as_of_ms, dtype=np.int64)
    n = len(lead)
    order = np.arange(n, dtype=np.int64)
    if n > 1:  # rows by (lead, as_of); a request's rows (one per lead, in lead order) are sorted already
        key = (lead << TS_BITS) | np.minimum(np.maximum(as_of - EPOCH_MS, 0), MAX_REL_MS)
        if bool((key[1:] < key[:-1]).any()):
            order = np.argsort(key, kind="stable")
    out = np.empty((_N_ROWS, n))
    _run_count(_grouped(ev), lead, as_of, order, out)
    values = {name: out[k] for name, k in _OUTPUT_ROWS}
    values["activity_trend"] = np.round(values["activity_trend"], 4)
    return values
