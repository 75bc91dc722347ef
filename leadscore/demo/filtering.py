"""The oracle's forward filter: the prior P(fit = high) from a lead's observed attributes, and the filter of
the hidden (fit, intent) posterior through each day's observed events (Poisson counts, email opens, clicks
and unsubscribes under fatigue, webinar attendance, the hand-over that reveals review). Each observable
event maps to one channel (``CHANNEL``); ``oracle.py`` reads the files and turns posteriors into
probabilities."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from leadscore.demo.model import DAY_MS, N_INTENT, REVIEW, Compiled
from leadscore.demo.params import POISSON_KINDS
from leadscore.demo.titles import seniority_from_title
from leadscore.features import schema

_KIND = {k: i for i, k in enumerate(POISSON_KINDS)}
NK = len(POISSON_KINDS)
CH_SENT, CH_OPEN, CH_CLICK, CH_UNSUB, CH_ATTEND = NK, NK + 1, NK + 2, NK + 3, NK + 4
NCH = NK + 5
CHANNEL = {
    **{(t, p): i for (t, p), i in _KIND.items()},
    ("email_sent", None): CH_SENT,
    ("email_opened", None): CH_OPEN,
    ("email_clicked", None): CH_CLICK,
    ("unsubscribed", None): CH_UNSUB,
    ("webinar_attended", None): CH_ATTEND,
}


def fit_prior(c: Compiled, leads: pd.DataFrame) -> np.ndarray:
    """P(fit = high | observed attributes), marginalising missing (or unknown) ones exactly."""
    n = len(leads)
    free_p = c.params.attributes.free_email_prob
    dom = leads["email_domain"].to_numpy(dtype=object)
    free_obs = np.array(
        [
            (-1 if d is None or not isinstance(d, str) else int(d.lower() in schema.FREE_EMAIL_DOMAINS))
            for d in dom
        ]
    )
    sen = [seniority_from_title(t) for t in leads["job_title"].to_numpy(dtype=object)]
    attrs = [  # (observed code or -1, probs, weights)
        (leads["source"], c.sources, c.source_p, c.source_w),
        (leads["industry"], c.industries, c.industry_p, c.industry_w),
        (leads["company_size"], c.sizes, c.size_p, c.size_w),
        (pd.Series(sen, dtype=object), c.seniorities, c.seniority_p, c.seniority_w),
    ]
    columns: list[np.ndarray] = []
    probs, weights = [], []
    for col, names, p, w in attrs:
        m = {v: i for i, v in enumerate(names)}
        columns.append(
            np.array([m.get(v, -1) if isinstance(v, str) else -1 for v in col.to_numpy(dtype=object)])
        )
        probs.append(p)
        weights.append(w)
    columns.append(free_obs)
    probs.append(np.array([1 - free_p, free_p]))
    weights.append(np.array([0.0, c.params.attributes.free_email_fit]))
    codes = np.stack(columns, axis=1)  # (n, A)
    base = np.full(n, c.params.attributes.fit_intercept)
    for a in range(codes.shape[1]):
        obs = codes[:, a] >= 0
        base[obs] += weights[a][codes[obs, a]]
    pattern = (codes < 0) @ (1 << np.arange(codes.shape[1]))
    out = np.empty(n)
    for pat in np.unique(pattern):
        sel = pattern == pat
        lw, lp = np.zeros(1), np.ones(1)
        for a in range(codes.shape[1]):
            if pat >> a & 1:
                lw = (lw[:, None] + weights[a][None, :]).ravel()
                lp = (lp[:, None] * probs[a][None, :]).ravel()
        out[sel] = (1.0 / (1.0 + np.exp(-(base[sel, None] + lw[None, :])))) @ lp
    return out


def forward_filter(
    c: Compiled,
    prior: np.ndarray,
    counts: np.ndarray,
    handed_day: np.ndarray,
    kmax: np.ndarray,
    want: Iterable[int],
    created: np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    """Forward filter for L leads; returns {k: posterior (L, 2, 4) after days 0..k-1} for each k in `want`."""
    em = c.params.emission
    L, K, _ = counts.shape
    logr = np.log(c.rates).reshape(2, NK, N_INTENT).transpose(1, 0, 2).reshape(NK, 2 * N_INTENT)
    sumr = c.rates.sum(axis=1).reshape(2 * N_INTENT)
    lc, l1c = np.log(c.p_click), np.log1p(-c.p_click)
    la, l1a = np.log(c.p_attend), np.log1p(-c.p_attend)
    sent_cum = np.concatenate([np.zeros((L, 1)), np.cumsum(counts[:, :, CH_SENT], axis=1)], axis=1)
    W, LAG = em.fatigue_window_days, em.webinar_lag_days
    reg_ch = _KIND[("webinar_registered", None)]
    alpha = np.stack([1 - prior, prior], axis=1)[:, :, None] * c.initial[None, :, :]
    results: dict[int, np.ndarray] = {}
    needed = {int(k) for k in want}
    if 0 in needed:
        results[0] = alpha.copy()
    for d in range(K):
        act = np.flatnonzero(kmax > d)
        if act.size == 0:
            break
        cd = counts[act, d, :].astype(float)
        ll = (cd[:, :NK] @ logr - sumr).reshape(-1, 2, N_INTENT)
        prev = sent_cum[act, d] - sent_cum[act, max(d - W, 0)]
        p_open = np.minimum(c.p_open[None, :] * c.fatigue(prev)[:, None], 1.0)  # (n, 4)
        s, o, cl, u = (cd[:, ch][:, None] for ch in (CH_SENT, CH_OPEN, CH_CLICK, CH_UNSUB))
        e = o * np.log(p_open) + (s - o) * np.log1p(-p_open)
        e = e + cl * lc[None, :] + (o - cl) * l1c[None, :]
        pu = c.unsub_prob(prev)
        e = e + np.where(s > 0, u * np.log(pu) + (1 - u) * np.log1p(-pu), 0.0)
        if d >= LAG:
            rl = counts[act, d - LAG, reg_ch].astype(float)[:, None]
            at = cd[:, CH_ATTEND][:, None]
            e = e + at * la[None, :] + (rl - at) * l1a[None, :]
        ll = ll + e[:, None, :]
        # hand-over reveals review exactly; staying unresolved in review has likelihood 1 - r
        inrev = (handed_day[act] <= d)[:, None, None]
        isrev = (np.arange(N_INTENT) == REVIEW)[None, None, :]
        ll = np.where(inrev == isrev, ll, -np.inf)
        ll[:, :, REVIEW] += np.log1p(-c.resolve)
        ll -= ll.max(axis=(1, 2), keepdims=True)
        w = alpha[act] * np.exp(ll)
        a = np.einsum("lfi,fij->lfj", w, c.trans)
        if created is not None:  # base-rate drift: day d -> d+1 of these leads moves with the drifted chain
            dr = np.flatnonzero(c.drifted(created[act] + (d + 1) * DAY_MS))
            a[dr] = np.einsum("lfi,fij->lfj", w[dr], c.trans_drift)
        alpha[act] = a / a.sum(axis=(1, 2), keepdims=True)
        if d + 1 in needed:
            results[d + 1] = alpha.copy()
    return results
