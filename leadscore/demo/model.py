"""Numeric arrays compiled from DemoParams, shared by the simulator and the oracle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from leadscore.demo.attribute_params import SENIORITIES
from leadscore.demo.params import FITS, POISSON_KINDS, DemoParams
from leadscore.features import schema

DAY_MS = 86_400_000
N_INTENT = 4
REVIEW = 3


def kind_key(kind: tuple[str, str | None]) -> str:
    t, page = kind
    return f"{t}:{page}" if page else t


def iso_to_ms(s: str) -> int:
    return int(datetime.fromisoformat(s).timestamp() * 1000)


@dataclass(frozen=True)
class Compiled:
    params: DemoParams
    start_ms: int
    snapshot_ms: int
    # attributes: category lists, probabilities, fit weights (aligned)
    sources: tuple[str, ...]
    source_p: np.ndarray
    source_w: np.ndarray
    industries: tuple[str, ...]
    industry_p: np.ndarray
    industry_w: np.ndarray
    sizes: tuple[str, ...]
    size_p: np.ndarray
    size_w: np.ndarray
    seniorities: tuple[str, ...]
    seniority_p: np.ndarray
    seniority_w: np.ndarray
    countries: tuple[str, ...]
    country_p: np.ndarray
    country_offset: np.ndarray
    initial: np.ndarray  # (fit, intent)
    trans: np.ndarray  # (fit, 4, 4); review row = identity (resolution handled separately)
    resolve: float
    qualify_true: np.ndarray  # (fit,)
    qualify_recorded: np.ndarray  # (fit,) P(recorded qualified | resolution, fit)
    rates: np.ndarray  # (fit, kind, intent)
    p_open: np.ndarray
    p_click: np.ndarray
    p_unsub: np.ndarray
    p_attend: np.ndarray
    trans_drift: np.ndarray  # (fit, 4, 4) used from drift_ms on; equal to trans without drift
    drift_ms: int  # no drift: beyond any time

    @classmethod
    def build(cls, p: DemoParams) -> Compiled:
        a, it, em = p.attributes, p.intent, p.emission

        def cat(names, probs, weights=None):
            pr = np.array([probs[n] for n in names], dtype=float)
            w = (
                np.array([weights[n] for n in names], dtype=float)
                if weights is not None
                else np.zeros(len(names))
            )
            return tuple(names), pr / pr.sum(), w

        src = cat(schema.SOURCES, a.source_probs, a.source_fit)
        ind = cat(schema.INDUSTRIES, a.industry_probs, a.industry_fit)
        siz = cat(schema.COMPANY_SIZES, a.size_probs, a.size_fit)
        sen = cat(SENIORITIES, a.seniority_probs, a.seniority_fit)
        ctry = tuple(a.country_probs)
        cp = np.array([a.country_probs[c] for c in ctry])

        def chain(transition):
            t = np.array([transition[f] for f in FITS], dtype=float)
            t[:, REVIEW, :] = 0.0
            t[:, REVIEW, REVIEW] = 1.0
            return t

        trans = chain(it.transition)
        qt = np.array([it.qualify_prob[f] for f in FITS])
        eps = it.label_flip
        rates = np.array(
            [[em.poisson_rates[f][kind_key(k)] for k in POISSON_KINDS] for f in FITS], dtype=float
        )
        return cls(
            params=p,
            start_ms=iso_to_ms(p.timeline.start),
            snapshot_ms=iso_to_ms(p.timeline.snapshot),
            sources=src[0],
            source_p=src[1],
            source_w=src[2],
            industries=ind[0],
            industry_p=ind[1],
            industry_w=ind[2],
            sizes=siz[0],
            size_p=siz[1],
            size_w=siz[2],
            seniorities=sen[0],
            seniority_p=sen[1],
            seniority_w=sen[2],
            countries=ctry,
            country_p=cp / cp.sum(),
            country_offset=np.array([a.country_offset_min[c] for c in ctry], dtype=np.int64),
            initial=np.array([it.initial[f] for f in FITS], dtype=float),
            trans=trans,
            resolve=it.resolve_prob,
            qualify_true=qt,
            qualify_recorded=qt * (1 - eps) + (1 - qt) * eps,
            rates=rates,
            p_open=np.array(em.p_open),
            p_click=np.array(em.p_click),
            p_unsub=np.array(em.p_unsub),
            p_attend=np.array(em.p_attend),
            trans_drift=chain(p.drift.transition) if p.drift else trans,
            drift_ms=iso_to_ms(p.drift.at) if p.drift else np.iinfo(np.int64).max,
        )

    def drifted(self, day_start_ms: np.ndarray) -> np.ndarray:
        """Whether the transition into the lead-age day starting at ``day_start_ms`` uses the drifted
        chain."""
        return np.asarray(day_start_ms) >= self.drift_ms

    def first_drifted_step(self, created_ms: np.ndarray, k: np.ndarray, horizon_days: int) -> np.ndarray:
        """Index i (0..H) of the first drifted transition day k+i -> k+i+1 of a horizon from day k."""
        if self.drift_ms == np.iinfo(np.int64).max:
            return np.full(np.shape(k), horizon_days, np.int64)
        # transition i is drifted iff created + (k + i + 1) days >= drift_ms
        days_to_drift = -np.floor_divide(created_ms - self.drift_ms, DAY_MS)  # ceil((drift - created) / day)
        return np.clip(days_to_drift - k - 1, 0, horizon_days).astype(np.int64)

    def fatigue(self, sent_prev: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + sent_prev / self.params.emission.fatigue_scale)

    def unsub_prob(self, sent_prev: np.ndarray) -> np.ndarray:
        """(n, intent) probability of unsubscribing on a day with at least one email."""
        return np.minimum(
            self.p_unsub[None, :] * (1.0 + self.params.emission.unsub_fatigue * sent_prev[:, None]), 0.999
        )

    def absorption(self, horizon_days: int, first_drifted: int | None = None) -> np.ndarray:
        """v[fit, intent] = P(recorded 'qualified' within days k..k+H-1 | fit, intent on day k, unresolved).

        Transitions k+i -> k+i+1 with i >= ``first_drifted`` use the drifted chain (None: none do).
        """
        v = np.zeros((2, N_INTENT))
        for f in range(2):
            q = self.trans[f].copy()
            q[REVIEW, REVIEW] = 1.0 - self.resolve
            qd = self.trans_drift[f].copy()
            qd[REVIEW, REVIEW] = 1.0 - self.resolve
            m = np.eye(N_INTENT)
            for i in range(horizon_days):
                v[f] += m[:, REVIEW] * self.resolve * self.qualify_recorded[f]
                m = m @ (qd if first_drifted is not None and i >= first_drifted else q)
        return v
