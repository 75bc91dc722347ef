"""The compiled counting kernel (numba) behind `events.event_features`: every count, days-since, rate and
trend of a row from its lead's events.

The rows are walked lead by lead. A lead with one row (a request, batch scoring) is counted in one pass over
its events, in any order (`_one_row`); a lead with several (training rows) has its events sorted by time
once, when they are not already, and each row's counts read off running counts per channel (`_many_rows`).
Both branches are compared by tests/features/test_batch_vs_single.py (a lead's rows together == each alone).
Times are ms since EPOCH_MS clipped to [0, MAX_REL_MS], the same for events and as_of moments.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
from leadscore.features.catalog import DAY_MS
from numba import njit

EPOCH_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z; timestamps before it are refused at load
TS_BITS: Final = 42  # ms since EPOCH_MS in 42 bits (139 years): lead << 42 | time orders the rows
MAX_REL_MS: Final = (1 << TS_BITS) - 1

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Codes = npt.NDArray[np.integer[Any]]  # int16 from a table, int64 from elsewhere
Buffers = tuple[Int64s, Int64s, Int64s, Int64s]  # `_many_rows`' scratch: keys, bits, cum, last


@njit(cache=True, nogil=True, inline="always")
def _rates(out: Floats, inputs: Int64s, first: int, i: int) -> None:  # pragma: no cover - compiled
    """Row i's rates and trends from its window counts, into out[first:first + 4, i]. Rates are capped at 1
    and missing (NaN) without an email sent in 30 days; the open-rate trend compares the last 30 days with
    the 60 before, when each had at least 2 emails; the activity trend is engagement per day in the last 7
    days minus that of the 23 before (rounded to 4 decimals by the caller, as numpy rounds)."""
    s30, s90 = out[inputs[0], i], out[inputs[1], i]
    opened30, opened90, clicked30 = out[inputs[2], i], out[inputs[3], i], out[inputs[4], i]
    eng7, eng30 = out[inputs[5], i], out[inputs[6], i]
    if s30 > 0:
        out[first, i] = min(opened30 / s30, 1.0)
        out[first + 1, i] = min(clicked30 / s30, 1.0)
    else:
        out[first, i] = np.nan
        out[first + 1, i] = np.nan
    earlier_sent = s90 - s30
    if s30 >= 2 and earlier_sent >= 2:
        out[first + 2, i] = min(opened30 / s30, 1.0) - min((opened90 - opened30) / earlier_sent, 1.0)
    else:
        out[first + 2, i] = np.nan
    out[first + 3, i] = eng7 / 7 - (eng30 - eng7) / 23


@njit(cache=True, nogil=True, inline="always")
def _clip(t: int) -> int:  # pragma: no cover - compiled
    return min(max(t - EPOCH_MS, 0), MAX_REL_MS)


@njit(cache=True, nogil=True, inline="always")
def _days(as_of: int, last: int) -> float:  # pragma: no cover - compiled
    """Whole days from `last` (clipped ms, -1: none) to `as_of` (ms since the Unix epoch); NaN for none."""
    return np.floor((as_of - (last + EPOCH_MS)) / DAY_MS) if last >= 0 else np.nan


@njit(cache=True, nogil=True)
def _one_row(
    ev_ts: Int64s,
    ev_type: Codes,
    ev_page: Codes,
    e0: int,
    e1: int,
    t: int,
    i: int,
    bits_table: Int64s,
    window_ms: Int64s,
    acc: Int64s,
    last: Int64s,
    out: Floats,
) -> None:  # pragma: no cover - compiled
    """One row of a lead: each of its events e0:e1, in any order, is counted where it falls (no sort)."""
    n_ch, n_slots = acc.shape
    hi = _clip(t)
    acc[:] = 0
    last[:] = -1
    for e in range(e0, e1):
        key = _clip(ev_ts[e])
        if key < hi:
            b = bits_table[ev_type[e], ev_page[e] + 1]
            c = 0
            while b:
                if b & 1:
                    acc[c, 0] += 1
                    for w in range(n_slots - 1):
                        if key >= _clip(t - window_ms[w]):
                            acc[c, 1 + w] += 1
                    last[c] = max(last[c], key)
                b >>= 1
                c += 1
    for c in range(n_ch):
        for k in range(n_slots):
            out[c * n_slots + k, i] = acc[c, k]
        out[n_ch * n_slots + c, i] = _days(t, last[c])


@njit(cache=True, nogil=True)
def _many_rows(
    ev_ts: Int64s,
    ev_type: Codes,
    ev_page: Codes,
    e0: int,
    e1: int,
    as_of: Int64s,
    rows: Int64s,
    bits_table: Int64s,
    window_ms: Int64s,
    buf: Buffers,
    out: Floats,
) -> Buffers:  # pragma: no cover - compiled
    """Several rows of a lead: its events sorted by time once, running counts per channel, and each row's
    counts read off them. `rows`: the rows' columns in `out`, best in as_of order (then the pointers only
    move forward; the steps back keep any other order right). `buf`: scratch, grown when too small."""
    n_win = window_ms.shape[0]
    n_slots = 1 + n_win
    m = e1 - e0
    keys, bits, cum, last = buf
    if m + 1 > cum.shape[0]:
        keys, bits = np.empty(2 * m, np.int64), np.empty(2 * m, np.int64)
        cum, last = (
            np.empty((2 * m + 1, cum.shape[1]), np.int64),
            np.empty((2 * m + 1, cum.shape[1]), np.int64),
        )
    n_ch = cum.shape[1]
    in_order = True
    for k in range(m):
        keys[k] = _clip(ev_ts[e0 + k])
        bits[k] = bits_table[ev_type[e0 + k], ev_page[e0 + k] + 1]
        in_order = in_order and (k == 0 or keys[k] >= keys[k - 1])
    if not in_order:
        by_time = np.argsort(keys[:m])
        keys[:m] = keys[:m][by_time]
        bits[:m] = bits[:m][by_time]
    cum[0, :] = 0  # cum[k, c]: events in channel c among the first k; last[k, c]: time of the last, or -1
    last[0, :] = -1
    for k in range(m):
        for c in range(n_ch):
            hit = (bits[k] >> c) & 1
            cum[k + 1, c] = cum[k, c] + hit
            last[k + 1, c] = keys[k] if hit else last[k, c]
    p = 0  # events before as_of
    q = np.zeros(n_win, np.int64)  # events before each window's start
    for i in rows:
        t = as_of[i]
        hi = _clip(t)
        while p < m and keys[p] < hi:
            p += 1
        while p > 0 and keys[p - 1] >= hi:
            p -= 1
        for c in range(n_ch):
            out[c * n_slots, i] = cum[p, c]
            out[n_ch * n_slots + c, i] = _days(t, last[p, c])
        for w in range(n_win):
            lo = _clip(t - window_ms[w])
            while q[w] < m and keys[q[w]] < lo:
                q[w] += 1
            while q[w] > 0 and keys[q[w] - 1] >= lo:
                q[w] -= 1
            since = min(q[w], p)
            for c in range(n_ch):
                out[c * n_slots + 1 + w, i] = cum[p, c] - cum[since, c]
    return keys, bits, cum, last


@njit(cache=True, nogil=True)
def count_rows(
    ev_lead: Int64s,
    ev_ts: Int64s,
    ev_type: Codes,
    ev_page: Codes,
    row_lead: Int64s,
    as_of: Int64s,
    order: Int64s,
    r_start: int,
    r_stop: int,
    bits_table: Int64s,
    window_ms: Int64s,
    rate_inputs: Int64s,
    out: Floats,
) -> None:  # pragma: no cover - compiled
    """Rows order[r_start:r_stop] (grouped by lead, best sorted by as_of within it) against the events
    (grouped by lead, in any order within it).

    For row i and channel c: out[c * S, i] = the lead's events in channel c stamped before as_of[i],
    out[c * S + 1 + w, i] = those stamped at or after as_of[i] - window_ms[w] too (S = 1 + windows),
    out[C * S + c, i] = whole days from the last of them to as_of[i] (NaN: none; C = channels), then the
    rates (`_rates`). Times are ms since EPOCH_MS clipped to [0, MAX_REL_MS]. A lead with one row (a
    request, batch scoring) is counted in one pass over its events; one with several (training rows)
    through running counts, which cost a sort but are shared by its rows.
    """
    n_ev = ev_lead.shape[0]
    first_rate = out.shape[0] - 4
    n_slots = 1 + window_ms.shape[0]
    n_ch = first_rate // (n_slots + 1)
    acc = np.empty((n_ch, n_slots), np.int64)
    last = np.empty(n_ch, np.int64)
    buf = (
        np.empty(16, np.int64),
        np.empty(16, np.int64),
        np.empty((17, n_ch), np.int64),
        np.empty((17, n_ch), np.int64),
    )
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
        r1 = r + 1
        while r1 < r_stop and row_lead[order[r1]] == lead:
            r1 += 1
        if r1 == r + 1:
            _one_row(
                ev_ts,
                ev_type,
                ev_page,
                e0,
                e1,
                as_of[order[r]],
                order[r],
                bits_table,
                window_ms,
                acc,
                last,
                out,
            )
        else:
            buf = _many_rows(
                ev_ts, ev_type, ev_page, e0, e1, as_of, order[r:r1], bits_table, window_ms, buf, out
            )
        for i in order[r:r1]:
            _rates(out, rate_inputs, first_rate, i)
        r = r1
        e0 = e1


@njit(cache=True, nogil=True)
def is_grouped(lead: Int64s) -> bool:  # pragma: no cover - compiled
    for e in range(1, lead.shape[0]):  # noqa: SIM110 - numba compiles a loop, not all(generator)
        if lead[e] < lead[e - 1]:
            return False
    return True
