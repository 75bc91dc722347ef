"""The demo simulation of one chunk of leads, in named steps: each lead's attributes and fit, the daily
walk of intent with its emails, activity, webinars, hand-over and resolution, the events' times within the
day, the outcomes after resolution and the sales events after them, the duplicate-row trap and the
`lead_quality` leakage trap. `leadscore.demo.generate` turns the result into tables.

Every draw is counter-based (``leadscore.demo.rng``): a function of (seed, stream, lead, day, slot), so the
order of the steps and the chunk size do not change one byte of the output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadscore.demo import rng
from leadscore.demo.attributes import Leads, lead_attributes, pick, static
from leadscore.demo.model import DAY_MS, Compiled
from leadscore.demo.params import FITS
from leadscore.demo.walk import ET, Walk, walk_days
from leadscore.features import schema

OC = {o: i for i, o in enumerate(schema.OUTCOMES)}
REASONS = (*schema.DISQUALIFY_REASONS, "price", "timing")
RC = {r: i for i, r in enumerate(REASONS)}
QUALITIES = ("high", "medium", "low", "worst")


@dataclass(frozen=True)
class Rows:
    """Event or outcome rows: lead index, code, page or reason (-1 = none), time (ms)."""

    lead: np.ndarray
    code: np.ndarray
    extra: np.ndarray
    ts: np.ndarray


@dataclass(frozen=True)
class Chunk:
    g: np.ndarray  # the leads' global numbers
    leads: Leads
    walk: Walk
    events: Rows  # code: event type, extra: page
    outcomes: Rows  # code: outcome, extra: reason
    quality: np.ndarray  # lead_quality code (QUALITIES), -1 = none


def simulate_chunk(c: Compiled, key: np.uint64, n_total: int, g0: int, g1: int) -> Chunk:
    """Leads number g0..g1-1 of `n_total`, simulated up to the snapshot."""
    g = np.arange(g0, g1, dtype=np.uint64)
    leads = lead_attributes(c, key, n_total, g)
    walk = walk_days(c, key, g, leads)
    res_frac = 0.3 + 0.69 * rng.uniform(key, rng.AFTER, g, 0, 0)  # when in its day the rep decides
    walked = _event_times(key, g, leads, walk, res_frac)
    outcomes, post = _after_resolution(c, key, g, leads, walk, res_frac)
    events = Rows(
        np.concatenate([walked.lead, post.lead.astype(np.int32)]),
        np.concatenate([walked.code, post.code]),
        np.concatenate([walked.extra, post.extra]),
        np.concatenate([walked.ts, post.ts]),
    )
    keep = events.ts < c.snapshot_ms
    events = Rows(events.lead[keep], events.code[keep], events.extra[keep], events.ts[keep])
    events = _with_duplicates(key, g, _distinct(events), c.params.duplicate_rate)
    quality = _lead_quality(c, static(key, g, 17), leads.fit, walk)
    return Chunk(g, leads, walk, events, outcomes, quality)


def _event_times(key: np.uint64, g: np.ndarray, leads: Leads, walk: Walk, res_frac: np.ndarray) -> Rows:
    """The walk's events with their times within the day: emails in the morning, reactions to them later,
    the hand-over at the start of the day; on the resolution day, before the rep records the outcome."""
    el, ed, et, ep = walk.ev_lead, walk.ev_day, walk.ev_type, walk.ev_page
    o = np.lexsort((ep, et, ed, el))
    el, ed, et, ep = el[o], ed[o], et[o], ep[o]
    grp = np.r_[True, (el[1:] != el[:-1]) | (ed[1:] != ed[:-1])] if el.size else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(grp, np.arange(el.size), 0))
    ordinal = np.arange(el.size) - first
    ut = rng.uniform(key, rng.TIMES, g[el], ed, np.minimum(ordinal, 255))
    frac = ut * 0.999
    frac = np.where(et == ET["email_sent"], 0.25 + 0.2 * ut, frac)
    late = np.isin(et, [ET["email_opened"], ET["email_clicked"], ET["unsubscribed"]])
    frac = np.where(late, 0.5 + 0.499 * ut, frac)
    frac = np.where(et == ET["handed_to_sales"], 0.0, frac)
    # on the resolution day, the day's activity happens before the rep records the outcome
    on_res_day = walk.resolved[el] & (ed == walk.res_day[el])
    frac = np.where(on_res_day, frac * res_frac[el], frac)
    ets = leads.created[el] + ed.astype(np.int64) * DAY_MS + np.floor(frac * DAY_MS).astype(np.int64)
    return Rows(el, et, ep, ets)


def _after_resolution(
    c: Compiled, key: np.uint64, g: np.ndarray, leads: Leads, walk: Walk, res_frac: np.ndarray
) -> tuple[Rows, Rows]:
    """The outcomes of the resolved leads (the verdict, then for some an opportunity, won or lost) before
    the snapshot, and a few sales events after the verdict ("event data carries timestamps after the
    outcome")."""
    af = c.params.after
    created, fit, res_rec = leads.created, leads.fit, walk.res_rec
    ri = np.flatnonzero(walk.resolved)
    gr = g[ri]

    def A(slot: int) -> np.ndarray:
        return rng.uniform(key, rng.AFTER, gr, 0, slot)

    rd = walk.res_day[ri].astype(np.int64)
    base = created[ri] + rd * DAY_MS
    oc_lead = [ri]
    oc_code = [np.where(res_rec[ri], OC["qualified"], OC["disqualified"])]
    oc_ts = [base + np.floor(res_frac[ri] * DAY_MS).astype(np.int64)]
    dq_reason = np.empty(ri.size, np.int64)
    for f, fname in enumerate(FITS):
        names = tuple(af.disqualify_reasons[fname])
        pr = np.array([af.disqualify_reasons[fname][x] for x in names])
        m = fit[ri] == f
        dq_reason[m] = np.array([RC[x] for x in names])[pick(A(1)[m], pr / pr.sum())]
    oc_reason = [np.where(res_rec[ri], -1, dq_reason)]
    p_opp = np.array([af.p_opportunity[f] for f in FITS])[fit[ri]]
    opp = res_rec[ri] & (A(2) < p_opp)
    opp_day = rd + 2 + np.floor(A(3) * 25).astype(np.int64)
    opp_ts = created[ri] + opp_day * DAY_MS + np.floor((0.3 + 0.69 * A(4)) * DAY_MS).astype(np.int64)
    oc_lead.append(ri[opp])
    oc_code.append(np.full(opp.sum(), OC["opportunity"]))
    oc_ts.append(opp_ts[opp])
    oc_reason.append(np.full(opp.sum(), -1))
    won = A(5) < np.array([af.p_won[f] for f in FITS])[fit[ri]]
    close_ts = (
        opp_ts
        + (10 + np.floor(A(6) * 60).astype(np.int64)) * DAY_MS
        + np.floor(A(7) * 3_600_000).astype(np.int64)
    )
    lr_names = tuple(af.lost_reasons)
    lr = np.array([RC[x] for x in lr_names])[pick(A(8), np.array([af.lost_reasons[x] for x in lr_names]))]
    oc_lead.append(ri[opp])
    oc_code.append(np.where(won, OC["won"], OC["lost"])[opp])
    oc_ts.append(close_ts[opp])
    oc_reason.append(np.where(won, -1, lr)[opp])
    ol, oco, ots, orr = (np.concatenate(x) for x in (oc_lead, oc_code, oc_ts, oc_reason))
    keep = ots < c.snapshot_ms
    outcomes = Rows(ol[keep], oco[keep], orr[keep], ots[keep])
    # the sales events after the verdict
    mean_post = np.where(res_rec[ri], af.post_events_mean["qualified"], af.post_events_mean["disqualified"])
    npost = np.minimum(rng.poisson_inv(A(9), mean_post), 40)
    prep = np.repeat(np.arange(ri.size), npost)
    pj = np.arange(prep.size) - np.repeat(np.cumsum(npost) - npost, npost)

    def P(slot: int) -> np.ndarray:
        return rng.uniform(key, rng.AFTER, gr[prep], 1 + pj, slot)

    ptype = np.where(P(0) < 0.5, ET["meeting"], ET["sales_call"]).astype(np.int8)
    pday = rd[prep] + 1 + np.floor(P(1) * 21).astype(np.int64)
    pts = created[ri[prep]] + pday * DAY_MS + np.floor(P(2) * 0.999 * DAY_MS).astype(np.int64)
    return outcomes, Rows(ri[prep], ptype, np.full(prep.size, -1, np.int8), pts)


def _distinct(ev: Rows) -> Rows:
    """The events in (lead, time, type, page) order, genuine ones made distinct by a millisecond where they
    coincide (identical rows only come from the duplicate trap)."""
    el, et, ep, ets = ev.lead, ev.code, ev.extra, ev.ts
    while el.size:
        o = np.lexsort((ets, ep, et, el))
        el, et, ep, ets = el[o], et[o], ep[o], ets[o]
        same = np.r_[
            False, (el[1:] == el[:-1]) & (et[1:] == et[:-1]) & (ep[1:] == ep[:-1]) & (ets[1:] == ets[:-1])
        ]
        if not same.any():
            break
        ets = ets + same
    o = np.lexsort((ep, et, ets, el))
    return Rows(el[o], et[o], ep[o], ets[o])


def _with_duplicates(key: np.uint64, g: np.ndarray, ev: Rows, rate: float) -> Rows:
    """The duplicate-row trap: about `rate` of the rows appear twice, right after themselves."""
    el = ev.lead
    if not el.size:
        return ev
    newlead = np.r_[True, el[1:] != el[:-1]]
    k = np.arange(el.size) - np.maximum.accumulate(np.where(newlead, np.arange(el.size), 0))
    ud = rng.uniform(key, rng.DUPS, g[el], np.minimum(k >> 8, 1023), k & 255)
    take = np.sort(np.concatenate([np.arange(el.size), np.flatnonzero(ud < rate)]), kind="stable")
    return Rows(el[take], ev.code[take], ev.extra[take], ev.ts[take])


def _lead_quality(c: Compiled, u: np.ndarray, fit: np.ndarray, walk: Walk) -> np.ndarray:
    """The `lead_quality` leakage trap: a CRM field filled in from what sales later decided."""
    resolved, res_rec, handed = walk.resolved, walk.res_rec, walk.handed
    lq = np.full(fit.size, -1, np.int64)
    lqp = c.params.after.lead_quality
    for group, mask in (
        ("qualified", resolved & res_rec),
        ("disqualified", resolved & ~res_rec),
        ("open_high", handed & ~resolved & (fit == 1)),
        ("open_low", handed & ~resolved & (fit == 0)),
    ):
        names = tuple(lqp[group])
        pr = np.array([lqp[group][x] for x in names])
        lq[mask] = np.array([QUALITIES.index(x) for x in names])[pick(u[mask], pr / pr.sum())]
    return lq
