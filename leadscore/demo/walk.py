"""The daily walk of each demo lead's hidden intent, and the events it emits, until the snapshot or the
sales rep's decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadscore.demo import rng
from leadscore.demo.attributes import Leads, static
from leadscore.demo.model import DAY_MS, REVIEW, Compiled
from leadscore.demo.params import INTENTS, POISSON_KINDS
from leadscore.features import schema

ET = {t: i for i, t in enumerate(schema.EVENT_TYPES)}
PG = {p: i for i, p in enumerate(schema.PAGE_KINDS)}
KIND_TYPE = np.array([ET[t] for t, _ in POISSON_KINDS], dtype=np.int8)
KIND_PAGE = np.array([PG[p] if p else -1 for _, p in POISSON_KINDS], dtype=np.int8)
RESOLVED_STATE = len(INTENTS)  # the hidden state after the rep's decision (params.RESOLVED)


@dataclass(frozen=True)
class Walk:
    """What the daily simulation produced: events by day, the hidden states, hand-over and resolution."""

    ev_lead: np.ndarray  # int32 index into the chunk
    ev_day: np.ndarray  # int32 day since creation
    ev_type: np.ndarray  # int8 code of schema.EVENT_TYPES
    ev_page: np.ndarray  # int8 code of schema.PAGE_KINDS, -1 = none
    handed: np.ndarray  # bool
    resolved: np.ndarray  # bool
    res_day: np.ndarray  # int32, -1 = open
    res_rec: np.ndarray  # bool: recorded qualified
    state_lead: np.ndarray  # the hidden intent: from day `state_day` on, lead `state_lead` is in `state`
    state_day: np.ndarray
    state: np.ndarray


class _EventLog:
    """Events of the daily walk, gathered day by day."""

    def __init__(self) -> None:
        self.lead: list[np.ndarray] = []
        self.day: list[np.ndarray] = []
        self.type: list[np.ndarray] = []
        self.page: list[np.ndarray] = []

    def emit(self, idx: np.ndarray, d: int, t: int | np.ndarray, page: int | np.ndarray = -1) -> None:
        if idx.size:
            self.lead.append(idx.astype(np.int32))
            self.day.append(np.full(idx.size, d, np.int32))
            self.type.append(
                np.full(idx.size, t, np.int8) if np.isscalar(t) else np.asarray(t).astype(np.int8)
            )
            self.page.append(
                np.full(idx.size, page, np.int8) if np.isscalar(page) else np.asarray(page).astype(np.int8)
            )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.lead:
            return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0, np.int8)
        return tuple(np.concatenate(x) for x in (self.lead, self.day, self.type, self.page))  # type: ignore[return-value]


def walk_days(c: Compiled, key: np.uint64, g: np.ndarray, leads: Leads) -> Walk:
    """Day by day until the snapshot or the rep's decision: hand-over, marketing emails and what the lead
    does with them, Poisson activity, webinar attendance, resolution in review, and the next day's intent."""
    p = c.params
    n = g.size
    created, fit = leads.created, leads.fit
    ndays = (c.snapshot_ms - 1 - created) // DAY_MS + 1  # days d with created + d*DAY < snapshot
    cum_init = np.cumsum(c.initial, axis=1)
    z = rng.categorical(static(key, g, 19), cum_init[fit]).astype(np.int8)
    cum_trans = np.cumsum(np.stack([c.trans, c.trans_drift]), axis=3)  # (drifted, fit, from, to)
    rates_tot = c.rates.sum(axis=1)  # (fit, intent)
    cum_rates = np.cumsum(c.rates / rates_tot[:, None, :], axis=1)  # (fit, kind, intent)
    em, cad = p.emission, p.cadence
    src_mult = np.array([cad.source_multiplier[s] for s in c.sources])[leads.source]
    handed = np.zeros(n, bool)
    unsub = np.zeros(n, bool)
    resolved = np.zeros(n, bool)
    res_day = np.full(n, -1, np.int32)
    res_rec = np.zeros(n, bool)  # recorded qualified
    W = em.fatigue_window_days
    LAG = em.webinar_lag_days
    sent_ring = np.zeros((W, n), np.int8)
    n_prev = np.zeros(n, np.int32)
    reg_ring = np.zeros((LAG, n), np.int8)
    log = _EventLog()
    hs_lead, hs_day, hs_state = [np.arange(n)], [np.zeros(n, np.int32)], [z.astype(np.int8)]

    max_days = int(ndays.max()) if n else 0
    for d in range(max_days):
        a = np.flatnonzero((ndays > d) & ~resolved)
        if a.size == 0:
            break
        ga = g[a]

        def Ud(slot: int, ga: np.ndarray = ga, d: int = d) -> np.ndarray:
            return rng.uniform(key, rng.DAILY, ga, d, slot)

        za, fa = z[a], fit[a]
        # hand-over: entering review emits handed_to_sales at the exact start of the day
        newh = (za == REVIEW) & ~handed[a]
        handed[a[newh]] = True
        log.emit(a[newh], d, ET["handed_to_sales"])
        # marketing emails: cadence from observed things only
        age_bucket = np.searchsorted(np.array(cad.age_breaks), d, side="right")
        elig = ~handed[a] & ~unsub[a]
        psend = np.minimum(cad.p_send[age_bucket] * src_mult[a], 1.0)
        sent = ((Ud(1) < psend) & elig).astype(np.int8) * (1 + (Ud(2) < cad.p_double))
        prev = n_prev[a]
        popen = c.p_open[za] * c.fatigue(prev)
        opens = np.zeros(a.size, np.int8)
        for t in range(2):
            opens += (t < sent) & (Ud(10 + t) < popen)
        clicks = np.zeros(a.size, np.int8)
        for t in range(2):
            clicks += (t < opens) & (Ud(12 + t) < c.p_click[za])
        p_unsub = c.unsub_prob(prev.astype(float))[np.arange(a.size), za]
        uns = (sent > 0) & (Ud(4) < p_unsub)
        log.emit(np.repeat(a, sent), d, ET["email_sent"])
        log.emit(np.repeat(a, opens), d, ET["email_opened"])
        log.emit(np.repeat(a, clicks), d, ET["email_clicked"])
        log.emit(a[uns], d, ET["unsubscribed"])
        unsub[a[uns]] = True
        # Poisson activity: total count, then a categorical split (same law as independent Poissons)
        N = rng.poisson_inv(Ud(3), rates_tot[fa, za])
        hit = np.flatnonzero(N)
        reg_today = np.zeros(a.size, np.int8)
        if hit.size:
            rep = np.repeat(hit, N[hit])
            starts = np.cumsum(N[hit]) - N[hit]
            j = np.arange(rep.size) - np.repeat(starts, N[hit])
            uk = rng.uniform(key, rng.DAILY, ga[rep], d, np.minimum(32 + j, 255))
            kind = rng.categorical(uk, cum_rates[fa[rep], :, za[rep]])
            log.emit(a[rep], d, KIND_TYPE[kind], KIND_PAGE[kind])
            np.add.at(reg_today, rep[KIND_TYPE[kind] == ET["webinar_registered"]], 1)
        # webinar attendance: Binomial(registrations LAG days ago, p_attend(intent))
        slot = d % LAG
        reg_lag = reg_ring[slot, a]
        if reg_lag.any():
            att = np.zeros(a.size, np.int8)
            for t in range(int(reg_lag.max())):
                att += (t < reg_lag) & (Ud(16 + min(t, 15)) < c.p_attend[za])
            log.emit(np.repeat(a, att), d, ET["webinar_attended"])
        reg_ring[slot, a] = reg_today
        # fatigue window bookkeeping: n_prev = emails sent in days d-W+1..d (used on day d+1)
        ws = d % W
        n_prev[a] += sent - sent_ring[ws, a]
        sent_ring[ws, a] = sent
        # resolution by the sales rep
        rv = np.flatnonzero(za == REVIEW)
        if rv.size:
            res = rv[Ud(5)[rv] < c.resolve]
            if res.size:
                li = a[res]
                true_q = Ud(6)[res] < c.qualify_true[fa[res]]
                flip = Ud(7)[res] < p.intent.label_flip
                resolved[li] = True
                res_day[li] = d
                res_rec[li] = true_q ^ flip
                nxt_ok = li[d + 1 < ndays[li]]
                hs_lead.append(nxt_ok)
                hs_day.append(np.full(nxt_ok.size, d + 1, np.int32))
                hs_state.append(np.full(nxt_ok.size, RESOLVED_STATE, np.int8))
        # intent transition to day d+1
        mv = np.flatnonzero(za != REVIEW)
        if mv.size:
            dr = c.drifted(created[a[mv]] + (d + 1) * DAY_MS).astype(np.int8)
            nz = rng.categorical(Ud(0)[mv], cum_trans[dr, fa[mv], za[mv]]).astype(np.int8)
            ch = mv[(nz != za[mv]) & (d + 1 < ndays[a[mv]])]
            z[a[mv]] = nz
            if ch.size:
                hs_lead.append(a[ch])
                hs_day.append(np.full(ch.size, d + 1, np.int32))
                hs_state.append(z[a[ch]])

    el, ed, et, ep = log.arrays()
    hl, hd, hs = (np.concatenate(x) for x in (hs_lead, hs_day, hs_state))
    return Walk(el, ed, et, ep, handed, resolved, res_day, res_rec, hl, hd, hs)
