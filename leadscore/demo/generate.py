"""Simulate the demo CRM export (leads, events, outcomes) and its ground truth.

Randomness is counter-based (``leadscore.demo.rng``): each draw is a function of (seed, lead, day, slot),
so the output does not depend on ``chunk_size``; row groups have fixed sizes, so even the parquet bytes
do not. See docs/demo-data.md for the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.demo import rng
from leadscore.demo.isotime import format_iso
from leadscore.demo.model import DAY_MS, REVIEW, Compiled
from leadscore.demo.params import FITS, INTENTS, POISSON_KINDS, RESOLVED, DemoParams
from leadscore.demo.titles import DEPARTMENTS, TEMPLATES
from leadscore.features import schema

ROW_GROUP = 1_000_000
ET = {t: i for i, t in enumerate(schema.EVENT_TYPES)}
PG = {p: i for i, p in enumerate(schema.PAGE_KINDS)}
KIND_TYPE = np.array([ET[t] for t, _ in POISSON_KINDS], dtype=np.int8)
KIND_PAGE = np.array([PG[p] if p else -1 for _, p in POISSON_KINDS], dtype=np.int8)
OC = {o: i for i, o in enumerate(schema.OUTCOMES)}
REASONS = (*schema.DISQUALIFY_REASONS, "price", "timing")
RC = {r: i for i, r in enumerate(REASONS)}
QUALITIES = ("high", "medium", "low", "worst")
CORP_A = (
    "acme",
    "north",
    "blue",
    "nova",
    "bright",
    "terra",
    "vertex",
    "lumen",
    "quant",
    "stone",
    "silver",
    "apex",
    "cedar",
    "orbit",
    "pioneer",
    "delta",
    "harbor",
    "summit",
    "iron",
    "clear",
)
CORP_B = (
    "labs",
    "systems",
    "works",
    "group",
    "tech",
    "soft",
    "data",
    "logic",
    "media",
    "health",
    "bank",
    "retail",
    "motors",
    "partners",
    "analytics",
    "cloud",
)
TLDS = ("com", "io", "de", "co.uk", "fr", "net", "com.br", "co")
FREE_DOMAINS = tuple(sorted(schema.FREE_EMAIL_DOMAINS))
FREE_W = np.array(
    [
        12.0 if d == "gmail.com" else 4.0 if d in ("yahoo.com", "hotmail.com", "outlook.com") else 1.0
        for d in FREE_DOMAINS
    ]
)
TITLE_TEMPLATES = {lvl: TEMPLATES[lvl] for lvl in TEMPLATES}


@dataclass(frozen=True)
class DatasetInfo:
    n_leads: int
    n_events: int
    n_outcomes: int
    snapshot_at: datetime
    seed: int


# ----------------------------------------------------------------------------------------------------------
class _FixedRowGroupWriter:
    """Buffers record batches and writes row groups of exactly ``rows`` rows (chunking-independent bytes)."""

    def __init__(self, path: Path, schema_: pa.Schema, rows: int = ROW_GROUP) -> None:
        self.w = pq.ParquetWriter(path, schema_, compression="zstd")
        self.schema = schema_
        self.rows = rows
        self.buf: list[pa.Table] = []
        self.n = 0
        self.total = 0

    def write(self, t: pa.Table) -> None:
        self.buf.append(t)
        self.n += t.num_rows
        self.total += t.num_rows
        while self.n >= self.rows:
            t = pa.concat_tables(self.buf).combine_chunks()
            self.w.write_table(t.slice(0, self.rows), row_group_size=self.rows)
            rest = t.slice(self.rows)
            self.buf, self.n = [rest], rest.num_rows

    def close(self) -> None:
        if self.n or self.total == 0:
            t = pa.concat_tables(self.buf) if self.buf else self.schema.empty_table()
            self.w.write_table(t.combine_chunks(), row_group_size=self.rows)
        self.w.close()


def _strings(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    codes = np.asarray(codes)
    idx = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(idx, pa.array(list(names), pa.string())).cast(pa.string())


LEADS_SCHEMA = pa.schema([(c, pa.string()) for c in (*schema.LEAD_COLUMNS, "lead_quality")])
EVENTS_SCHEMA = pa.schema([(c, pa.string()) for c in schema.EVENT_COLUMNS])
OUTCOMES_SCHEMA = pa.schema([(c, pa.string()) for c in schema.OUTCOME_COLUMNS])
HIDDEN_SCHEMA = pa.schema(
    [("lead_id", pa.string()), ("from_day", pa.int32()), ("fit", pa.string()), ("intent", pa.string())]
)


# ----------------------------------------------------------------------------------------------------------
def _creation_times(c: Compiled, key, n: int, g: np.ndarray) -> np.ndarray:
    tl = c.params.timeline
    ndays = (c.snapshot_ms - c.start_ms) // DAY_MS
    day = np.arange(ndays)
    weekday = (np.datetime64(c.start_ms, "ms").astype("datetime64[D]") + day).astype(np.int64)
    weekday = (weekday + 3) % 7  # 1970-01-01 was a Thursday -> Monday = 0
    w = np.exp(tl.growth * day / ndays) * np.array(tl.weekday_factors)[weekday]
    cum = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
    q = (g + rng.uniform(key, rng.STATIC, g, 0, 0)) / n
    pos = np.interp(q, cum, np.arange(ndays + 1, dtype=float))
    return np.minimum(c.start_ms + np.floor(pos * DAY_MS).astype(np.int64), c.snapshot_ms - 1)


def _cat(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(np.cumsum(p), u, side="right"), len(p) - 1)


def _simulate_chunk(c: Compiled, key, n_total: int, g0: int, g1: int, id_width: int):
    p = c.params
    g = np.arange(g0, g1, dtype=np.uint64)
    n = g.size

    def U(slot):
        return rng.uniform(key, rng.STATIC, g, 0, slot)

    created = _creation_times(c, key, n_total, g)
    src = _cat(U(1), c.source_p)
    ind = _cat(U(2), c.industry_p)
    siz = _cat(U(3), c.size_p)
    sen = _cat(U(4), c.seniority_p)
    free = U(5) < p.attributes.free_email_prob
    ctry = _cat(U(6), c.country_p)
    logit = (
        p.attributes.fit_intercept
        + c.source_w[src]
        + c.industry_w[ind]
        + c.size_w[siz]
        + c.seniority_w[sen]
        + p.attributes.free_email_fit * free
    )
    fit = (U(16) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    miss = p.attributes.missing
    ind_obs = np.where(U(12) < miss["industry"], -1, ind)
    siz_obs = np.where(U(13) < miss["company_size"], -1, siz)
    ctry_obs = np.where(U(14) < miss["country"], -1, ctry)
    title_missing = U(15) < miss["job_title"]
    offset = c.country_offset[ctry]

    # ---------------- daily simulation ----------------
    ndays = (c.snapshot_ms - 1 - created) // DAY_MS + 1  # days d with created + d*DAY < snapshot
    cum_init = np.cumsum(c.initial, axis=1)
    z = rng.categorical(U(19), cum_init[fit]).astype(np.int8)
    cum_trans = np.cumsum(np.stack([c.trans, c.trans_drift]), axis=3)  # (drifted, fit, from, to)
    rates_tot = c.rates.sum(axis=1)  # (fit, intent)
    cum_rates = np.cumsum(c.rates / rates_tot[:, None, :], axis=1)  # (fit, kind, intent)
    em, cad = p.emission, p.cadence
    src_mult = np.array([cad.source_multiplier[s] for s in c.sources])[src]
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
    ev_lead, ev_day, ev_type, ev_page = [], [], [], []
    hs_lead, hs_day, hs_state = [np.arange(n)], [np.zeros(n, np.int32)], [z.astype(np.int8)]

    def emit(idx, d, t, page=-1):
        if idx.size:
            ev_lead.append(idx.astype(np.int32))
            ev_day.append(np.full(idx.size, d, np.int32))
            ev_type.append(np.full(idx.size, t, np.int8) if np.isscalar(t) else t.astype(np.int8))
            ev_page.append(np.full(idx.size, page, np.int8) if np.isscalar(page) else page.astype(np.int8))

    max_days = int(ndays.max()) if n else 0
    for d in range(max_days):
        a = np.flatnonzero((ndays > d) & ~resolved)
        if a.size == 0:
            break
        ga = g[a]

        def Ud(slot, ga=ga, d=d):
            return rng.uniform(key, rng.DAILY, ga, d, slot)

        za, fa = z[a], fit[a]
        # hand-over: entering review emits handed_to_sales at the exact start of the day
        newh = (za == REVIEW) & ~handed[a]
        handed[a[newh]] = True
        emit(a[newh], d, ET["handed_to_sales"])
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
        pu = c.unsub_prob(prev.astype(float))[np.arange(a.size), za]
        uns = (sent > 0) & (Ud(4) < pu)
        emit(np.repeat(a, sent), d, ET["email_sent"])
        emit(np.repeat(a, opens), d, ET["email_opened"])
        emit(np.repeat(a, clicks), d, ET["email_clicked"])
        emit(a[uns], d, ET["unsubscribed"])
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
            emit(a[rep], d, KIND_TYPE[kind], KIND_PAGE[kind])
            np.add.at(reg_today, rep[KIND_TYPE[kind] == ET["webinar_registered"]], 1)
        # webinar attendance: Binomial(registrations LAG days ago, p_attend(intent))
        slot = d % LAG
        reg_lag = reg_ring[slot, a]
        if reg_lag.any():
            att = np.zeros(a.size, np.int8)
            for t in range(int(reg_lag.max())):
                att += (t < reg_lag) & (Ud(16 + min(t, 15)) < c.p_attend[za])
            emit(np.repeat(a, att), d, ET["webinar_attended"])
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
                hs_state.append(np.full(nxt_ok.size, 4, np.int8))
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

    # ---------------- events: times within the day ----------------
    el = np.concatenate(ev_lead) if ev_lead else np.zeros(0, np.int32)
    ed = np.concatenate(ev_day) if ev_day else np.zeros(0, np.int32)
    et = np.concatenate(ev_type) if ev_type else np.zeros(0, np.int8)
    ep = np.concatenate(ev_page) if ev_page else np.zeros(0, np.int8)
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
    res_frac = 0.3 + 0.69 * rng.uniform(key, rng.AFTER, g, 0, 0)
    on_res_day = resolved[el] & (ed == res_day[el])
    frac = np.where(on_res_day, frac * res_frac[el], frac)
    ets = created[el] + ed.astype(np.int64) * DAY_MS + np.floor(frac * DAY_MS).astype(np.int64)

    # ---------------- after resolution: outcomes, follow-ups, sales events ----------------
    ri = np.flatnonzero(resolved)
    gr = g[ri]

    def A(slot):
        return rng.uniform(key, rng.AFTER, gr, 0, slot)

    af = p.after
    rd = res_day[ri].astype(np.int64)
    base = created[ri] + rd * DAY_MS
    oc_lead = [ri]
    oc_code = [np.where(res_rec[ri], OC["qualified"], OC["disqualified"])]
    oc_ts = [base + np.floor(res_frac[ri] * DAY_MS).astype(np.int64)]
    dq_reason = np.empty(ri.size, np.int64)
    for f, fname in enumerate(FITS):
        names = tuple(af.disqualify_reasons[fname])
        pr = np.array([af.disqualify_reasons[fname][x] for x in names])
        m = fit[ri] == f
        dq_reason[m] = np.array([RC[x] for x in names])[_cat(A(1)[m], pr / pr.sum())]
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
    lr = np.array([RC[x] for x in lr_names])[_cat(A(8), np.array([af.lost_reasons[x] for x in lr_names]))]
    oc_lead.append(ri[opp])
    oc_code.append(np.where(won, OC["won"], OC["lost"])[opp])
    oc_ts.append(close_ts[opp])
    oc_reason.append(np.where(won, -1, lr)[opp])
    ol, oco, ots, orr = (np.concatenate(x) for x in (oc_lead, oc_code, oc_ts, oc_reason))
    keep = ots < c.snapshot_ms
    ol, oco, ots, orr = ol[keep], oco[keep], ots[keep], orr[keep]
    # a few sales events after the outcome ("event data carries timestamps after the outcome")
    mean_post = np.where(res_rec[ri], af.post_events_mean["qualified"], af.post_events_mean["disqualified"])
    npost = np.minimum(rng.poisson_inv(A(9), mean_post), 40)
    prep = np.repeat(np.arange(ri.size), npost)
    pj = np.arange(prep.size) - np.repeat(np.cumsum(npost) - npost, npost)

    def pu(k):
        return rng.uniform(key, rng.AFTER, gr[prep], 1 + pj, k)

    ptype = np.where(pu(0) < 0.5, ET["meeting"], ET["sales_call"]).astype(np.int8)
    pday = rd[prep] + 1 + np.floor(pu(1) * 21).astype(np.int64)
    pts = created[ri[prep]] + pday * DAY_MS + np.floor(pu(2) * 0.999 * DAY_MS).astype(np.int64)
    el = np.concatenate([el, ri[prep].astype(np.int32)])
    et = np.concatenate([et, ptype])
    ep = np.concatenate([ep, np.full(prep.size, -1, np.int8)])
    ets = np.concatenate([ets, pts])
    keep = ets < c.snapshot_ms
    el, et, ep, ets = el[keep], et[keep], ep[keep], ets[keep]
    # make genuine events distinct (identical rows only come from the duplicate trap below)
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
    el, et, ep, ets = el[o], et[o], ep[o], ets[o]
    # exact duplicate rows (~0.3 %)
    if el.size:
        newlead = np.r_[True, el[1:] != el[:-1]]
        k = np.arange(el.size) - np.maximum.accumulate(np.where(newlead, np.arange(el.size), 0))
        ud = rng.uniform(key, rng.DUPS, g[el], np.minimum(k >> 8, 1023), k & 255)
        take = np.sort(
            np.concatenate([np.arange(el.size), np.flatnonzero(ud < p.duplicate_rate)]), kind="stable"
        )
        el, et, ep, ets = el[take], et[take], ep[take], ets[take]

    # ---------------- lead_quality (leakage trap) ----------------
    uq = U(17)
    lq = np.full(n, -1, np.int64)
    lqp = af.lead_quality
    for key_, mask in (
        ("qualified", resolved & res_rec),
        ("disqualified", resolved & ~res_rec),
        ("open_high", handed & ~resolved & (fit == 1)),
        ("open_low", handed & ~resolved & (fit == 0)),
    ):
        names = tuple(lqp[key_])
        pr = np.array([lqp[key_][x] for x in names])
        lq[mask] = np.array([QUALITIES.index(x) for x in names])[_cat(uq[mask], pr / pr.sum())]

    # ---------------- tables ----------------
    ids = np.array([f"L{int(x) + 1:0{id_width}d}" for x in g], dtype=object)
    id_arr = pa.array(ids, pa.string())
    titles = []
    ut1, ut2 = U(7), U(8)
    for i in range(n):
        if title_missing[i]:
            titles.append(None)
            continue
        tpl = TITLE_TEMPLATES[c.seniorities[sen[i]]]
        t = tpl[int(ut1[i] * len(tpl))]
        titles.append(t.format(d=DEPARTMENTS[int(ut2[i] * len(DEPARTMENTS))]) if "{d}" in t else t)
    ua, ub, uc, uf = U(9), U(10), U(11), U(18)
    fw = FREE_W / FREE_W.sum()
    fi = _cat(uf, fw)
    domains = [
        FREE_DOMAINS[fi[i]]
        if free[i]
        else f"{CORP_A[int(ua[i] * len(CORP_A))]}{CORP_B[int(ub[i] * len(CORP_B))]}.{TLDS[int(uc[i] * len(TLDS))]}"
        for i in range(n)
    ]
    leads = pa.table(
        {
            "lead_id": id_arr,
            "created_at": format_iso(created, offset),
            "source": _strings(src, c.sources),
            "industry": _strings(ind_obs, c.industries),
            "company_size": _strings(siz_obs, c.sizes),
            "country": _strings(ctry_obs, c.countries),
            "job_title": pa.array(titles, pa.string()),
            "email_domain": pa.array(domains, pa.string()),
            "lead_quality": _strings(lq, QUALITIES),
        },
        schema=LEADS_SCHEMA,
    )
    events = pa.table(
        {
            "lead_id": pa.DictionaryArray.from_arrays(pa.array(el), id_arr).cast(pa.string()),
            "type": _strings(et, schema.EVENT_TYPES),
            "timestamp": format_iso(ets, offset[el]),
            "page": _strings(ep, schema.PAGE_KINDS),
        },
        schema=EVENTS_SCHEMA,
    )
    oo = np.lexsort((oco, ots, ol))
    ol, oco, ots, orr = ol[oo], oco[oo], ots[oo], orr[oo]
    outcomes = pa.table(
        {
            "lead_id": pa.DictionaryArray.from_arrays(pa.array(ol.astype(np.int32)), id_arr).cast(
                pa.string()
            ),
            "outcome": _strings(oco, schema.OUTCOMES),
            "at": format_iso(ots, offset[ol]),
            "reason": _strings(orr, REASONS),
        },
        schema=OUTCOMES_SCHEMA,
    )
    hl, hd, hs = (np.concatenate(x) for x in (hs_lead, hs_day, hs_state))
    ho = np.lexsort((hd, hl))
    hl, hd, hs = hl[ho], hd[ho], hs[ho]
    hidden = pa.table(
        {
            "lead_id": pa.DictionaryArray.from_arrays(pa.array(hl.astype(np.int32)), id_arr).cast(
                pa.string()
            ),
            "from_day": pa.array(hd, pa.int32()),
            "fit": _strings(fit[hl], FITS),
            "intent": _strings(hs, (*INTENTS, RESOLVED)),
        },
        schema=HIDDEN_SCHEMA,
    )
    return leads, events, outcomes, hidden


def generate(
    out_dir: Path,
    n_leads: int,
    seed: int = 0,
    chunk_size: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
    params: DemoParams | None = None,
) -> DatasetInfo:
    """Write leads/events/outcomes parquet files, dataset.json and ground_truth/ into out_dir."""
    if n_leads < 1 or n_leads >= 2**30:
        raise ValueError("n_leads must be in [1, 2**30)")
    params = params or DemoParams()
    c = Compiled.build(params)
    key = rng.seed_key(seed)
    out_dir = Path(out_dir)
    (out_dir / "ground_truth").mkdir(parents=True, exist_ok=True)
    id_width = max(7, len(str(n_leads)))
    writers = {
        "leads": _FixedRowGroupWriter(out_dir / "leads.parquet", LEADS_SCHEMA),
        "events": _FixedRowGroupWriter(out_dir / "events.parquet", EVENTS_SCHEMA),
        "outcomes": _FixedRowGroupWriter(out_dir / "outcomes.parquet", OUTCOMES_SCHEMA),
        "hidden": _FixedRowGroupWriter(out_dir / "ground_truth" / "hidden_states.parquet", HIDDEN_SCHEMA),
    }
    chunk_size = max(1, int(chunk_size))
    try:
        for g0 in range(0, n_leads, chunk_size):
            g1 = min(n_leads, g0 + chunk_size)
            for name, table in zip(
                ("leads", "events", "outcomes", "hidden"),
                _simulate_chunk(c, key, n_leads, g0, g1, id_width),
                strict=True,
            ):
                writers[name].write(table)
            if progress is not None:
                progress(g1, n_leads)
    finally:
        for w in writers.values():
            w.close()
    snapshot = datetime.fromtimestamp(c.snapshot_ms / 1000, tz=UTC)
    info = DatasetInfo(
        n_leads=n_leads,
        n_events=writers["events"].total,
        n_outcomes=writers["outcomes"].total,
        snapshot_at=snapshot,
        seed=seed,
    )
    meta = {
        "snapshot_at": snapshot.isoformat().replace("+00:00", "Z"),
        "seed": seed,
        "n_leads": n_leads,
        "n_events": info.n_events,
        "n_outcomes": info.n_outcomes,
        "generator": params.generator,
    }
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out_dir / "ground_truth" / "params.json").write_text(params.to_json() + "\n")
    return info
