"""The event counting kernel: the one implementation of every event feature, for a request and for 1M leads.

A row is (lead, as_of); its event features come from the lead's events stamped strictly before as_of. One
compiled pass (`_count`, numba) walks the rows lead by lead: it takes the lead's events, sorts them by time
if they are not sorted yet (a request's events come in any order; a lead has few), keeps running counts
per channel over them and reads every window count and the last event before each of the lead's as_of
moments off those counts. Rates and trends follow in a second compiled loop (`_rates`).

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
from leadscore.features.schema import EVENT_TYPES, PAGE_KINDS
from numba import njit

EPOCH_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z; timestamps before it are refused at load
TS_BITS: Final = (
    42  # times are ms since EPOCH_MS clipped to 42 bits (139 years); lead << 42 | time sorts rows
)
MAX_REL_MS: Final = (1 << TS_BITS) - 1
MAX_LEADS_PER_BATCH: Final = 1 << (63 - TS_BITS)  # lead codes must stay below this in one call

TYPE_CODE: Final = {t: i for i, t in enumerate(EVENT_TYPES)}
PAGE_CODE: Final = {p: i for i, p in enumerate(PAGE_KINDS)}
NO_PAGE: Final = -1
# a call with at least twice this many rows runs on several cores, split at lead boundaries (the kernel
# drops the GIL); fewer rows do not pay for the threads
ROWS_PER_THREAD: Final = 100_000

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class EventArrays:
    lead: npt.NDArray[np.integer]  # lead code (an index into the leads of the call)
    ts_ms: npt.NDArray[np.integer]  # ms since the Unix epoch, UTC
    type_code: npt.NDArray[np.integer]  # index into schema.EVENT_TYPES
    page_code: npt.NDArray[np.integer]  # index into schema.PAGE_KINDS, or NO_PAGE


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
# The kernel's output: one contiguous row per (channel, window slot) count, then one per channel for the
# days since its last event. Window slot 0: all time before as_of, then one per catalogue window.
_N_SLOTS: Final = 1 + len(WINDOWS)
_N_COUNTS: Final = len(CHANNELS) * _N_SLOTS
_CORES: Final = os.cpu_count() or 1


def _count_row(channel: str, window: int | None) -> int:
    """The output row of `channel`'s events in the last `window` days (None: all time)."""
    return _CH[channel] * _N_SLOTS + (0 if window is None else 1 + WINDOWS.index(window))


def _output_rows() -> tuple[tuple[str, int], ...]:
    """(feature, output row) for every count and days-since feature of the catalogue."""
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
    return tuple(rows)


_OUTPUT_ROWS: Final = _output_rows()


@njit(cache=True, nogil=True)
def _count(
    ev_lead,
    ev_ts,
    ev_type,
    ev_page,
    row_lead,
    as_of,
    order,
    r_start,
    r_stop,
    bits_table,
    window_ms,
    counts,
    days,
):  # pragma: no cover - compiled
    """Rows order[r_start:r_stop] (sorted by lead, then as_of) against the events (grouped by lead).

    For row i and channel c: counts[c, 0, i] = the lead's events in channel c stamped before as_of[i],
    counts[c, 1 + w, i] = those stamped at or after as_of[i] - window_ms[w] too, days[c, i] = whole days
    from the last of them to as_of[i] (NaN: none). Times are ms since EPOCH_MS clipped to [0, MAX_REL_MS].
    """
    n_ch, n_win, n_ev = counts.shape[0], window_ms.shape[0], ev_lead.shape[0]
    size = 16
    keys = np.empty(size, np.int64)
    bits = np.empty(size, np.int64)
    cum = np.empty((size + 1, n_ch), np.int64)  # cum[k, c]: events in channel c among the lead's first k
    last = np.empty((size + 1, n_ch), np.int64)  # last[k, c]: time of the last of them, or -1
    q = np.zeros(n_win, np.int64)
    if r_start >= r_stop:
        return
    e0 = np.searchsorted(ev_lead, row_lead[order[r_start]])  # first event of the current lead
    r = r_start
    while r < r_stop:
        lead = row_lead[order[r]]
        while e0 < n_ev and ev_lead[e0] < lead:
            e0 += 1
        e1 = e0
        while e1 < n_ev and ev_lead[e1] == lead:
            e1 += 1
        m = e1 - e0
        if m > size:
            size = 2 * m
            keys = np.empty(size, np.int64)
            bits = np.empty(size, np.int64)
            cum = np.empty((size + 1, n_ch), np.int64)
            last = np.empty((size + 1, n_ch), np.int64)
        in_order = True
        for k in range(m):
            keys[k] = min(max(ev_ts[e0 + k] - EPOCH_MS, 0), MAX_REL_MS)
            bits[k] = bits_table[ev_type[e0 + k], ev_page[e0 + k] + 1]
            if k > 0 and keys[k] < keys[k - 1]:
                in_order = False
        if not in_order:
            by_time = np.argsort(keys[:m])
            keys[:m] = keys[:m][by_time]
            bits[:m] = bits[:m][by_time]
        for c in range(n_ch):
            cum[0, c] = 0
            last[0, c] = -1
        for k in range(m):
            for c in range(n_ch):
                if (bits[k] >> c) & 1:
                    cum[k + 1, c] = cum[k, c] + 1
                    last[k + 1, c] = keys[k]
                else:
                    cum[k + 1, c] = cum[k, c]
                    last[k + 1, c] = last[k, c]
        p = 0  # the lead's rows come in as_of order, so the pointers only move forward
        q[:] = 0
        while r < r_stop and row_lead[order[r]] == lead:
            i = order[r]
            t = as_of[i]
            hi = min(max(t - EPOCH_MS, 0), MAX_REL_MS)
            while p < m and keys[p] < hi:
                p += 1
            for c in range(n_ch):
                counts[c, 0, i] = cum[p, c]
                days[c, i] = np.floor((t - (last[p, c] + EPOCH_MS)) / DAY_MS) if last[p, c] >= 0 else np.nan
            for w in range(n_win):
                lo = min(max(t - window_ms[w] - EPOCH_MS, 0), MAX_REL_MS)
                while q[w] < m and keys[q[w]] < lo:
                    q[w] += 1
                since = min(q[w], p)
                for c in range(n_ch):
                    counts[c, 1 + w, i] = cum[p, c] - cum[since, c]
            r += 1
        e0 = e1


def _run_count(ev: EventArrays, row_lead: Int64s, as_of: Int64s, order: Int64s, out: Floats) -> None:
    """`_count` over all rows into `out` (counts, then days since), one part per core of at least
    ROWS_PER_THREAD rows, split at lead boundaries (the kernel drops the GIL)."""
    n = len(order)
    counts = out[:_N_COUNTS].reshape(len(CHANNELS), _N_SLOTS, n)
    days = out[_N_COUNTS:]
    parts = max(1, min(_CORES, n // ROWS_PER_THREAD))
    cuts = [0, n]
    if parts > 1:
        sorted_lead = row_lead[order]
        cuts[1:1] = [int(np.searchsorted(sorted_lead, sorted_lead[n * k // parts])) for k in range(1, parts)]
    jobs = [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]

    def run(job: tuple[int, int]) -> None:
        _count(
            ev.lead, ev.ts_ms, ev.type_code, ev.page_code, row_lead, as_of, order, job[0], job[1],
            CHANNEL_BITS, _WINDOW_MS, counts, days,
        )  # fmt: skip

    if len(jobs) <= 1:
        for job in jobs:
            run(job)
        return
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(run, jobs))


@njit(cache=True, nogil=True)
def _rates(
    sent30, sent90, opened30, opened90, clicked30, eng7, eng30, open_rate, click_rate, open_trend, activity
):  # pragma: no cover - compiled
    for i in range(sent30.shape[0]):
        s30 = sent30[i]
        if s30 > 0:
            open_rate[i] = min(opened30[i] / s30, 1.0)
            click_rate[i] = min(clicked30[i] / s30, 1.0)
        else:
            open_rate[i] = np.nan
            click_rate[i] = np.nan
        earlier_sent = sent90[i] - s30
        if s30 >= 2 and earlier_sent >= 2:
            open_trend[i] = min(opened30[i] / s30, 1.0) - min((opened90[i] - opened30[i]) / earlier_sent, 1.0)
        else:
            open_trend[i] = np.nan
        activity[i] = eng7[i] / 7 - (eng30[i] - eng7[i]) / 23


def _derived(out: Floats) -> dict[str, Floats]:
    """Rates and trends from the window counts (`out` as `_run_count` fills it). Rates are capped at 1 and
    missing (NaN) without an email sent in 30 days; the open-rate trend compares the last 30 days with the
    60 before, when each had at least 2 emails; the activity trend is engagement per day in the last 7 days
    minus that of the 23 before, rounded to 4 decimals."""

    def cnt(channel: str, window: int) -> Floats:
        return out[_count_row(channel, window)]

    n = out.shape[1]
    rates = np.empty((4, n))
    _rates(
        cnt("email_sent", 30),
        cnt("email_sent", 90),
        cnt("email_opened", 30),
        cnt("email_opened", 90),
        cnt("email_clicked", 30),
        cnt("engagement", 7),
        cnt("engagement", 30),
        rates[0],
        rates[1],
        rates[2],
        rates[3],
    )
    return {
        "open_rate_30d": rates[0],
        "click_rate_30d": rates[1],
        "open_rate_trend": rates[2],
        "activity_trend": np.round(rates[3], 4),
    }


def _grouped(ev: EventArrays) -> EventArrays:
    """The events grouped by lead (stable: their order within a lead is kept), as the kernel reads them."""
    lead = np.asarray(ev.lead, dtype=np.int64)
    ts = np.asarray(ev.ts_ms, dtype=np.int64)
    if len(lead) > 1 and bool((lead[1:] < lead[:-1]).any()):
        by_lead = np.argsort(lead, kind="stable")
        return EventArrays(lead[by_lead], ts[by_lead], ev.type_code[by_lead], ev.page_code[by_lead])
    return EventArrays(lead, ts, ev.type_code, ev.page_code)


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
    out = np.empty((_N_COUNTS + len(CHANNELS), n))
    _run_count(_grouped(ev), lead, as_of, order, out)
    values = {name: out[k] for name, k in _OUTPUT_ROWS}
    values.update(_derived(out))
    return values
