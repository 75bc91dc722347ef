"""Point-in-time features: one numpy code path for training rows, batch scoring and a single live request.

Inputs are plain arrays (see `LeadArrays`, `EventArrays`), outputs a dict name -> array aligned with the
rows. A row is (lead, as_of); a value for that row is computed only from events stamped strictly before
as_of. No pandas and no Python loop per lead: events are sorted by the int64 key `lead << 42 | ms since
2000-01-01`, rows by (lead, as_of), and one compiled pass (`_sweep`, numba) walks each lead's events and
rows together: per channel, running counts give every window count and the last event before as_of.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import numpy as np
from leadscore.features import catalog
from leadscore.features.catalog import CHANNELS, DAY_MS, ENGAGEMENT, HIGH_INTENT, WINDOWS
from leadscore.features.schema import EVENT_TYPES, FREE_EMAIL_DOMAINS, PAGE_KINDS
from leadscore.features.titles import seniority_many
from numba import njit

EPOCH_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z; timestamps before it are refused at load
TS_BITS: Final = 42  # 2**42 ms = 139 years after EPOCH_MS
MAX_LEADS_PER_BATCH: Final = 1 << (63 - TS_BITS)  # lead codes must stay below this in one call

TYPE_CODE: Final = {t: i for i, t in enumerate(EVENT_TYPES)}
PAGE_CODE: Final = {p: i for i, p in enumerate(PAGE_KINDS)}  # -1 = no page
NO_PAGE: Final = -1


@dataclass(frozen=True, slots=True)
class LeadArrays:
    """Leads, one entry per lead code 0..n-1. Attribute arrays hold str or None."""

    created_ms: np.ndarray  # int64, ms since the Unix epoch, UTC
    attributes: dict[str, np.ndarray]  # source, industry, company_size, country, job_title, email_domain


@dataclass(frozen=True, slots=True)
class EventArrays:
    lead: np.ndarray  # int64 lead code
    ts_ms: np.ndarray  # int64 ms since the Unix epoch, UTC
    type_code: np.ndarray  # int16 index into schema.EVENT_TYPES
    page_code: np.ndarray  # int16 index into schema.PAGE_KINDS, or NO_PAGE


def _channel_masks(ev: EventArrays) -> dict[str, np.ndarray]:
    t, p = ev.type_code, ev.page_code
    web = t == TYPE_CODE["web_visit"]
    masks: dict[str, np.ndarray] = {}
    for name in CHANNELS:
        if name.startswith("visit_"):
            masks[name] = web & (p == PAGE_CODE[name.removeprefix("visit_")])
        elif name == "engagement":
            masks[name] = np.isin(t, [TYPE_CODE[c] for c in ENGAGEMENT])
        elif name == "high_intent":
            masks[name] = np.isin(t, [TYPE_CODE[c] for c in HIGH_INTENT if c in TYPE_CODE]) | (
                web & (p == PAGE_CODE["pricing"])
            )
        else:
            masks[name] = t == TYPE_CODE[name]
    return masks


def _channel_bits() -> np.ndarray:
    """(type code, page code + 1) -> bit c set when such an event is in CHANNELS[c] (`_channel_masks`)."""
    t = np.repeat(np.arange(len(EVENT_TYPES)), len(PAGE_KINDS) + 1)
    p = np.tile(np.arange(-1, len(PAGE_KINDS)), len(EVENT_TYPES))
    masks = _channel_masks(EventArrays(lead=t, ts_ms=t, type_code=t, page_code=p))
    bits = sum(masks[name].astype(np.int64) << c for c, name in enumerate(CHANNELS))
    return bits.reshape(len(EVENT_TYPES), len(PAGE_KINDS) + 1)


def _keys(lead: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    rel = np.clip(ts_ms - EPOCH_MS, 0, (1 << TS_BITS) - 1)
    return (lead.astype(np.int64) << TS_BITS) | rel


@njit(cache=True, nogil=True)
def _sweep(ev_keys, ev_bits, row_keys, lo_keys, r_start, r_stop, out_count, out_last):  # pragma: no cover
    """Rows r_start:r_stop of `row_keys` (sorted keys lead << 42 | rel ms) against the sorted event keys.

    For row i (column j = i of the outputs) and channel c: out_count[c, 0, j] = the lead's events in
    channel c with key < row key (all earlier events), out_count[c, 1 + k, j] = those with key >=
    lo_keys[k, i] too (window k), out_last[c, j] = the key of the last such event, or -1. Bit c of
    `ev_bits[e]` says whether event e is in channel c.
    """
    n_channels = out_count.shape[0]
    n_windows = lo_keys.shape[0]
    n_ev = ev_keys.shape[0]
    shift = np.int64(TS_BITS)
    cum = np.zeros((16, n_channels), np.int64)  # cum[k, c]: events of channel c among the lead's first k
    last = np.zeros((16, n_channels), np.int64)  # last[k, c]: key of the last of them, or -1
    q_all = np.zeros(n_windows, np.int64)
    if r_start >= r_stop:
        return
    e0 = np.searchsorted(ev_keys, (row_keys[r_start] >> shift) << shift)  # first event of the current lead
    r = r_start
    while r < r_stop:
        lead = row_keys[r] >> shift
        r1 = r
        while r1 < r_stop and (row_keys[r1] >> shift) == lead:
            r1 += 1
        while e0 < n_ev and (ev_keys[e0] >> shift) < lead:
            e0 += 1
        e1 = e0
        while e1 < n_ev and (ev_keys[e1] >> shift) == lead:
            e1 += 1
        m = e1 - e0
        if m + 1 > cum.shape[0]:
            cum = np.zeros((2 * (m + 1), n_channels), np.int64)
            last = np.zeros((2 * (m + 1), n_channels), np.int64)
        for c in range(n_channels):
            cum[0, c] = 0
            last[0, c] = -1
        for k in range(m):
            bits = ev_bits[e0 + k]
            key = ev_keys[e0 + k]
            for c in range(n_channels):
                if (bits >> c) & 1:
                    cum[k + 1, c] = cum[k, c] + 1
                    last[k + 1, c] = key
                else:
                    cum[k + 1, c] = cum[k, c]
                    last[k + 1, c] = last[k, c]
        p = 0  # rows come in key order, so every pointer only moves forward within a lead
        q_all[:] = 0
        for i in range(r, r1):
            j = i
            hi = row_keys[i]
            while p < m and ev_keys[e0 + p] < hi:
                p += 1
            for c in range(n_channels):
                out_count[c, 0, j] = cum[p, c]
                out_last[c, j] = last[p, c]
            for w in range(n_windows):
                lo = lo_keys[w, i]
                q = q_all[w]
                while q < m and ev_keys[e0 + q] < lo:
                    q += 1
                q_all[w] = q
                q = min(q, p)
                for c in range(n_channels):
                    out_count[c, 1 + w, j] = cum[p, c] - cum[q, c]
        r = r1
        e0 = e1


def _run_sweep(keys_all, bits, hi, lo_keys, count, last_key) -> None:
    """`_sweep` over all rows, split at lead boundaries into one part per core (the kernel drops the GIL)."""
    n = len(hi)
    parts = max(1, min(os.cpu_count() or 1, n // 100_000))
    cuts = [0]
    for k in range(1, parts):  # never split a lead's rows: the kernel walks each lead once
        lead_start = (hi[n * k // parts] >> TS_BITS) << TS_BITS
        cuts.append(max(cuts[-1], int(np.searchsorted(hi, lead_start))))
    cuts.append(n)
    jobs = [(a, b) for a, b in itertools.pairwise(cuts) if b > a]

    def run(ab):
        return _sweep(keys_all, bits, hi, lo_keys, ab[0], ab[1], count, last_key)

    if len(jobs) <= 1:
        for ab in jobs:
            run(ab)
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


def derived_features(cnt) -> dict[str, np.ndarray]:
    """Rates and trends from window counts: the one definition for the batch and the live path.

    `cnt(channel, window)` returns float64 counts per row of `channel` in the last `window` days. Rates are
    capped at 1 and missing (NaN) without an email sent in 30 days; the open-rate trend compares the last
    30 days with the 60 before, when each had at least 2 emails; the activity trend is engagement per day
    in the last 7 days minus that of the 23 before, rounded to 4 decimals. One compiled loop (`_rates`).
    """
    sent30 = np.ascontiguousarray(cnt("email_sent", 30), dtype=np.float64)
    n = len(sent30)
    out = {
        name: np.empty(n) for name in ("open_rate_30d", "click_rate_30d", "open_rate_trend", "activity_trend")
    }
    f64 = lambda channel, window: np.ascontiguousarray(cnt(channel, window), dtype=np.float64)  # noqa: E731
    _rates(
        sent30,
        f64("email_sent", 90),
        f64("email_opened", 30),
        f64("email_opened", 90),
        f64("email_clicked", 30),
        f64("engagement", 7),
        f64("engagement", 30),
        out["open_rate_30d"],
        out["click_rate_30d"],
        out["open_rate_trend"],
        out["activity_trend"],
    )
    out["activity_trend"] = np.round(out["activity_trend"], 4)
    return out


def event_features(ev: EventArrays, row_lead: np.ndarray, as_of_ms: np.ndarray) -> dict[str, np.ndarray]:
    """Engagement, intent and pressure features for each row from events stamped strictly before as_of."""
    row_lead = np.asarray(row_lead).astype(np.int64)
    as_of_ms = np.asarray(as_of_ms).astype(np.int64)
    # rows in (lead, as_of) order and events in (lead, time) order: one sweep over both
    hi_unsorted = _keys(row_lead, as_of_ms)
    row_order = np.argsort(hi_unsorted, kind="stable")
    hi = hi_unsorted[row_order]
    lead_s, as_of_s = row_lead[row_order], as_of_ms[row_order]
    keys_unsorted = _keys(ev.lead, ev.ts_ms)
    order = np.argsort(keys_unsorted, kind="stable")
    keys_all = keys_unsorted[order]
    del keys_unsorted
    bits = _channel_bits()[ev.type_code[order].astype(np.int64), ev.page_code[order].astype(np.int64) + 1]
    lo_keys = (
        np.stack([_keys(lead_s, as_of_s - w * DAY_MS) for w in WINDOWS])
        if len(hi)
        else np.zeros((len(WINDOWS), 0), dtype=np.int64)
    )
    n, C = len(hi), len(CHANNELS)
    count = np.empty((C, 1 + len(WINDOWS), n), dtype=np.float64)  # each feature a contiguous row
    last_key = np.empty((C, n), dtype=np.int64)
    _run_sweep(keys_all, bits, hi, lo_keys, count, last_key)
    as_of_ms = as_of_s  # everything below is in sorted row order, put back at the end

    def counts(channel: str, window: int | None) -> np.ndarray:
        return count[CHANNELS.index(channel), 0 if window is None else 1 + WINDOWS.index(window)]

    out: dict[str, np.ndarray] = {}
    for c, name in enumerate(CHANNELS):
        if f"days_since_{name}" in catalog.BY_NAME:
            k = last_key[c]
            last_ms = (k & ((1 << TS_BITS) - 1)) + EPOCH_MS
            out[f"days_since_{name}"] = np.where(k >= 0, np.floor((as_of_ms - last_ms) / DAY_MS), np.nan)

    f64 = np.float64
    for spec in catalog.FEATURES:
        name = spec.name
        for w in WINDOWS:
            suffix = f"_{w}d"
            if name.endswith(suffix) and name.removesuffix(suffix) in CHANNELS:
                out[name] = counts(name.removesuffix(suffix), w)
        if name.endswith("_total"):
            out[name] = counts(name.removesuffix("_total"), None)

    out.update(derived_features(lambda channel, window: counts(channel, window).astype(f64)))
    unsorted: dict[str, np.ndarray] = {}
    for name, v in out.items():
        back = np.empty_like(v)
        back[row_order] = v
        unsorted[name] = back
    return unsorted


def profile_features(leads: LeadArrays, row_lead: np.ndarray, as_of_ms: np.ndarray) -> dict[str, np.ndarray]:
    """Fit features from the lead's attributes, plus the lead's age at as_of."""
    a = leads.attributes
    domain = a["email_domain"]
    email_type = np.array(
        [
            None
            if not isinstance(d, str) or not d
            else ("free" if d.strip().lower() in FREE_EMAIL_DOMAINS else "corporate")
            for d in domain
        ],
        dtype=object,
    )
    per_lead = {
        "source": a["source"],
        "industry": a["industry"],
        "company_size": a["company_size"],
        "country": a["country"],
        "seniority": seniority_many(a["job_title"]),
        "email_type": email_type,
    }
    out = {k: np.asarray(v, dtype=object)[row_lead] for k, v in per_lead.items()}
    out["lead_age_days"] = np.floor((as_of_ms - leads.created_ms[row_lead]) / DAY_MS).astype(np.float64)
    return out


def build(
    leads: LeadArrays, events: EventArrays, row_lead: np.ndarray, as_of_ms: np.ndarray
) -> dict[str, np.ndarray]:
    """All catalogue features for rows (lead code, as_of in ms), in catalogue order."""
    if len(leads.created_ms) >= MAX_LEADS_PER_BATCH:
        raise ValueError(f"at most {MAX_LEADS_PER_BATCH - 1} leads per feature batch")
    values = {**profile_features(leads, row_lead, as_of_ms), **event_features(events, row_lead, as_of_ms)}
    return {spec.name: values[spec.name] for spec in catalog.FEATURES}
