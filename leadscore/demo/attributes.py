"""Each demo lead's attributes and fit: drawn once per lead (the STATIC stream), never by day."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadscore.demo import rng
from leadscore.demo.model import DAY_MS, Compiled


@dataclass(frozen=True)
class Leads:
    """Each lead's draws: the true attributes (codes), what the export shows of them (-1 = missing), fit."""

    created: np.ndarray  # int64 ms
    source: np.ndarray
    industry: np.ndarray
    size: np.ndarray
    seniority: np.ndarray
    free_email: np.ndarray  # bool
    country: np.ndarray
    fit: np.ndarray  # int8: 1 = good fit
    industry_shown: np.ndarray
    size_shown: np.ndarray
    country_shown: np.ndarray
    title_missing: np.ndarray  # bool
    offset: np.ndarray  # the country's UTC offset (minutes), for the timestamps' text


def creation_times(c: Compiled, key: np.uint64, n: int, g: np.ndarray) -> np.ndarray:
    tl = c.params.timeline
    ndays = (c.snapshot_ms - c.start_ms) // DAY_MS
    day = np.arange(ndays)
    weekday = (np.datetime64(c.start_ms, "ms").astype("datetime64[D]") + day).astype(np.int64)
    weekday = (weekday + 3) % 7  # 1970-01-01 was a Thursday -> Monday = 0
    w = np.exp(tl.growth * day / ndays) * np.array(tl.weekday_factors)[weekday]
    cum = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
    q = (g + rng.uniform(key, rng.STATIC, g, 0, 0)) / n
    pos = np.interp(q, cum, np.arange(ndays + 1, dtype=float))
    return np.asarray(np.minimum(c.start_ms + np.floor(pos * DAY_MS).astype(np.int64), c.snapshot_ms - 1))


def pick(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The category of each uniform `u` under probabilities `p`."""
    return np.asarray(np.minimum(np.searchsorted(np.cumsum(p), u, side="right"), len(p) - 1))


def static(key: np.uint64, g: np.ndarray, slot: int) -> np.ndarray:
    """The lead's own uniform draw number `slot` (not tied to a day)."""
    return rng.uniform(key, rng.STATIC, g, 0, slot)


def lead_attributes(c: Compiled, key: np.uint64, n_total: int, g: np.ndarray) -> Leads:
    p = c.params.attributes
    created = creation_times(c, key, n_total, g)
    src = pick(static(key, g, 1), c.source_p)
    ind = pick(static(key, g, 2), c.industry_p)
    siz = pick(static(key, g, 3), c.size_p)
    sen = pick(static(key, g, 4), c.seniority_p)
    free = static(key, g, 5) < p.free_email_prob
    ctry = pick(static(key, g, 6), c.country_p)
    logit = (
        p.fit_intercept
        + c.source_w[src]
        + c.industry_w[ind]
        + c.size_w[siz]
        + c.seniority_w[sen]
        + p.free_email_fit * free
    )
    fit = (static(key, g, 16) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    miss = p.missing
    return Leads(
        created=created,
        source=src,
        industry=ind,
        size=siz,
        seniority=sen,
        free_email=free,
        country=ctry,
        fit=fit,
        industry_shown=np.where(static(key, g, 12) < miss["industry"], -1, ind),
        size_shown=np.where(static(key, g, 13) < miss["company_size"], -1, siz),
        country_shown=np.where(static(key, g, 14) < miss["country"], -1, ctry),
        title_missing=static(key, g, 15) < miss["job_title"],
        offset=c.country_offset[ctry],
    )
