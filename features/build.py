"""Point-in-time features: one numpy code path for training rows, batch scoring and a single live request.

Inputs are plain arrays (see `LeadArrays`, `EventArrays`), outputs a dict name -> array aligned with the
rows. A row is (lead, as_of); a value for that row is computed only from events stamped strictly before
as_of. No pandas and no Python loop per lead: each event stream is one sorted int64 key array
`lead << 42 | ms since 2000-01-01`, and every window count or "last seen" lookup is a binary search in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from leadscore.features import catalog
from leadscore.features.catalog import CHANNELS, DAY_MS, ENGAGEMENT, HIGH_INTENT, WINDOWS
from leadscore.features.schema import EVENT_TYPES, FREE_EMAIL_DOMAINS, PAGE_KINDS
from leadscore.features.titles import seniority_many

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
                web & (p == PAGE_CODE["pricing"]))
        else:
            masks[name] = t == TYPE_CODE[name]
    return masks


def _keys(lead: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    rel = np.clip(ts_ms - EPOCH_MS, 0, (1 << TS_BITS) - 1)
    return (lead.astype(np.int64) << TS_BITS) | rel


class _Stream:
    """One channel's events, sorted, answering window counts and last-seen lookups for many rows."""

    __slots__ = ("keys",)

    def __init__(self, keys: np.ndarray):
        self.keys = keys

    def count(self, row_start: np.ndarray, lo_key: np.ndarray, hi_key: np.ndarray) -> np.ndarray:
        lo = np.maximum(np.searchsorted(self.keys, lo_key, "left"), row_start)
        return (np.searchsorted(self.keys, hi_key, "left") - lo).clip(min=0)

    def days_since(self, row_lead: np.ndarray, hi_key: np.ndarray, as_of_ms: np.ndarray) -> np.ndarray:
        return self.days_since_from(np.searchsorted(self.keys, hi_key, "left"), row_lead, as_of_ms)

    def days_since_from(self, end: np.ndarray, row_lead: np.ndarray, as_of_ms: np.ndarray) -> np.ndarray:
        """`days_since` given end = searchsorted(keys, hi_key, "left") for each row."""
        pos = end - 1
        safe = pos.clip(min=0)
        found = (pos >= 0) & ((self.keys[safe] >> TS_BITS) == row_lead) if len(self.keys) else pos >= 0
        last_ms = (self.keys[safe] & ((1 << TS_BITS) - 1)) + EPOCH_MS if len(self.keys) else as_of_ms
        return np.where(found, np.floor((as_of_ms - last_ms) / DAY_MS), np.nan)


def event_features(ev: EventArrays, row_lead: np.ndarray, as_of_ms: np.ndarray) -> dict[str, np.ndarray]:
    """Engagement, intent and pressure features for each row from events stamped strictly before as_of."""
    row_lead = np.asarray(row_lead).astype(np.int64)
    as_of_ms = np.asarray(as_of_ms).astype(np.int64)
    # Rows are processed in (lead, as_of) order: every query array below is then sorted too, which makes
    # the binary searches walk the event keys once instead of jumping around at random. Results are put
    # back in the caller's row order at the end.
    hi_unsorted = _keys(row_lead, as_of_ms)
    row_order = np.argsort(hi_unsorted, kind="stable")
    row_lead, as_of_ms, hi = row_lead[row_order], as_of_ms[row_order], hi_unsorted[row_order]
    keys_unsorted = _keys(ev.lead, ev.ts_ms)
    order = np.argsort(keys_unsorted, kind="stable")
    keys_all = keys_unsorted[order]
    del keys_unsorted
    masks = {k: m[order] for k, m in _channel_masks(ev).items()}
    lead_start = row_lead << TS_BITS
    window_lo = {w: _keys(row_lead, as_of_ms - w * DAY_MS) for w in WINDOWS}
    out: dict[str, np.ndarray] = {}
    counts: dict[tuple[str, int | None], np.ndarray] = {}
    for name in CHANNELS:
        stream = _Stream(keys_all[masks[name]])
        start = np.searchsorted(stream.keys, lead_start, "left")
        end = np.searchsorted(stream.keys, hi, "left")
        counts[name, None] = (end - start).clip(min=0)
        for w in WINDOWS:
            lo = np.maximum(np.searchsorted(stream.keys, window_lo[w], "left"), start)
            counts[name, w] = (end - lo).clip(min=0)
        if f"days_since_{name}" in catalog.BY_NAME:
            out[f"days_since_{name}"] = stream.days_since_from(end, row_lead, as_of_ms)

    f64 = np.float64
    for spec in catalog.FEATURES:
        name = spec.name
        for w in WINDOWS:
            suffix = f"_{w}d"
            if name.endswith(suffix) and name.removesuffix(suffix) in CHANNELS:
                out[name] = counts[name.removesuffix(suffix), w].astype(f64)
        if name.endswith("_total"):
            out[name] = counts[name.removesuffix("_total"), None].astype(f64)

    sent30, sent90 = counts["email_sent", 30].astype(f64), counts["email_sent", 90].astype(f64)
    opened30, opened90 = counts["email_opened", 30].astype(f64), counts["email_opened", 90].astype(f64)
    clicked30 = counts["email_clicked", 30].astype(f64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["open_rate_30d"] = np.where(sent30 > 0, np.minimum(opened30 / sent30, 1.0), np.nan)
        out["click_rate_30d"] = np.where(sent30 > 0, np.minimum(clicked30 / sent30, 1.0), np.nan)
        earlier_sent, earlier_opened = sent90 - sent30, opened90 - opened30
        out["open_rate_trend"] = np.where(
            (sent30 >= 2) & (earlier_sent >= 2),
            np.minimum(opened30 / np.maximum(sent30, 1), 1) - np.minimum(earlier_opened / np.maximum(earlier_sent, 1), 1),
            np.nan,
        )
    eng7, eng30 = counts["engagement", 7].astype(f64), counts["engagement", 30].astype(f64)
    out["activity_trend"] = np.round(eng7 / 7 - (eng30 - eng7) / 23, 4)
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
        [None if not isinstance(d, str) or not d else ("free" if d.strip().lower() in FREE_EMAIL_DOMAINS
                                                        else "corporate") for d in domain],
        dtype=object,
    )
    per_lead = {
        "source": a["source"], "industry": a["industry"], "company_size": a["company_size"],
        "country": a["country"], "seniority": seniority_many(a["job_title"]), "email_type": email_type,
    }
    out = {k: np.asarray(v, dtype=object)[row_lead] for k, v in per_lead.items()}
    out["lead_age_days"] = np.floor((as_of_ms - leads.created_ms[row_lead]) / DAY_MS).astype(np.float64)
    return out


def build(leads: LeadArrays, events: EventArrays, row_lead: np.ndarray, as_of_ms: np.ndarray) -> dict[str, np.ndarray]:
    """All catalogue features for rows (lead code, as_of in ms), in catalogue order."""
    if len(leads.created_ms) >= MAX_LEADS_PER_BATCH:
        raise ValueError(f"at most {MAX_LEADS_PER_BATCH - 1} leads per feature batch")
    values = {**profile_features(leads, row_lead, as_of_ms), **event_features(events, row_lead, as_of_ms)}
    return {spec.name: values[spec.name] for spec in catalog.FEATURES}
