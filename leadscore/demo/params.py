"""Parameters of the demo CRM generative model (see docs/demo-data.md).

Everything the simulator draws from lives here as frozen dataclasses, so the same object drives the
generator and the exact oracle, and ``ground_truth/params.json`` fully describes a generated data set.
Index conventions: fit 0 = low, 1 = high; intent 0..3 = cold, warm, hot, review (``INTENTS``).
Who the leads are (``AttributeParams``: attributes and their weight in fit) is in ``attribute_params.py``;
this module holds how they behave (intent chain, emissions, cadence, outcomes, drift) and the whole.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from leadscore.demo.attribute_params import AttributeParams, dict_field
from leadscore.features import schema

FITS = ("low", "high")
INTENTS = ("cold", "warm", "hot", "review")
RESOLVED = "resolved"  # hidden-state label after the sales rep recorded an outcome
# Marketing/sales activity with Poisson counts per lead-day: (event type, page or None).
POISSON_KINDS: tuple[tuple[str, str | None], ...] = (
    *(("web_visit", p) for p in schema.PAGE_KINDS),
    ("content_download", None),
    ("webinar_registered", None),
    ("form_submitted", None),
    ("demo_requested", None),
    ("sales_call", None),
    ("meeting", None),
)
GENERATOR = "leadscore-demo/1"


@dataclass(frozen=True)
class TimelineParams:
    start: str = "2025-01-01T00:00:00+00:00"
    snapshot: str = "2026-07-01T00:00:00+00:00"
    growth: float = 1.0  # log of (lead intensity at the snapshot / at the start)
    weekday_factors: tuple[float, ...] = (1.15, 1.2, 1.15, 1.1, 0.95, 0.45, 0.4)  # Mon..Sun


@dataclass(frozen=True)
class IntentParams:
    """Daily Markov chain of intent given fit; review is left only by resolution."""

    initial: dict[str, list[float]] = dict_field(low=[0.68, 0.22, 0.10, 0.0], high=[0.40, 0.30, 0.30, 0.0])
    # rows/cols cold, warm, hot, review (review row is ignored: review -> resolved with resolve_prob)
    transition: dict[str, list[list[float]]] = dict_field(
        low=[[0.997, 0.003, 0.0, 0.0], [0.06, 0.925, 0.015, 0.0], [0.0, 0.10, 0.85, 0.05], [0, 0, 0, 1.0]],
        high=[[0.994, 0.006, 0.0, 0.0], [0.04, 0.91, 0.05, 0.0], [0.0, 0.06, 0.84, 0.10], [0, 0, 0, 1.0]],
    )
    resolve_prob: float = 0.15  # per review day
    qualify_prob: dict[str, float] = dict_field(low=0.35, high=0.85)  # true outcome qualified | fit
    label_flip: float = 0.04  # recorded outcome differs from the true one


@dataclass(frozen=True)
class EmissionParams:
    """Per lead-day emissions given (fit, intent) and observed marketing pressure."""

    # Poisson rate per day, per fit, per kind (POISSON_KINDS order, key "type" or "web_visit:page"),
    # per intent (cold, warm, hot, review)
    poisson_rates: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: {
            fit: {
                "web_visit:pricing": [0.004 * m, 0.03 * m, 0.18 * m, 0.12 * m],
                "web_visit:docs": [0.004 * m, 0.04 * m, 0.15 * m, 0.12 * m],
                "web_visit:blog": [0.02, 0.08, 0.10, 0.05],
                "web_visit:careers": [0.010, 0.02, 0.02, 0.01]
                if fit == "low"
                else [0.002, 0.003, 0.003, 0.002],
                "web_visit:home": [0.01, 0.05, 0.15, 0.08],
                "content_download": [0.003, 0.03, 0.06, 0.02],
                "webinar_registered": [0.001, 0.01, 0.02, 0.005],
                "form_submitted": [0.001, 0.008, 0.05, 0.02],
                "demo_requested": [0.0002, 0.002, 0.04 * m, 0.01],
                "sales_call": [0.002, 0.003, 0.01, 0.25],
                "meeting": [0.0005, 0.001, 0.005, 0.12],
            }
            for fit, m in (("low", 0.8), ("high", 1.2))
        }
    )
    p_open: list[float] = field(default_factory=lambda: [0.12, 0.25, 0.45, 0.30])
    p_click: list[float] = field(default_factory=lambda: [0.05, 0.12, 0.25, 0.15])
    fatigue_scale: float = 8.0  # open prob * 1 / (1 + sent_prev_30d / fatigue_scale)
    fatigue_window_days: int = 30
    p_unsub: list[float] = field(default_factory=lambda: [0.012, 0.006, 0.003, 0.003])
    unsub_fatigue: float = 0.10  # p_unsub(intent) * (1 + unsub_fatigue * sent_prev_30d)
    p_attend: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.5])
    webinar_lag_days: int = 5  # attendance day = registration day + lag


@dataclass(frozen=True)
class CadenceParams:
    """Marketing email cadence: depends only on observed things (source, age, unsubscribed, handed over)."""

    age_breaks: tuple[int, ...] = (14, 60, 180)
    p_send: tuple[float, ...] = (0.22, 0.10, 0.05, 0.025)
    p_double: float = 0.15
    source_multiplier: dict[str, float] = dict_field(
        organic_search=1.0,
        paid_search=1.2,
        social=1.1,
        referral=0.8,
        webinar=1.0,
        event=0.9,
        partner=0.8,
        direct=1.0,
        outbound=1.6,
    )


@dataclass(frozen=True)
class AfterParams:
    """What follows a resolution (not needed by the oracle: rows after resolution are NaN)."""

    p_opportunity: dict[str, float] = dict_field(low=0.3, high=0.6)
    p_won: dict[str, float] = dict_field(low=0.25, high=0.5)
    post_events_mean: dict[str, float] = dict_field(qualified=2.0, disqualified=0.8)
    disqualify_reasons: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            "low": {"bad_fit": 0.45, "student": 0.2, "competitor": 0.15, "spam": 0.15, "other": 0.05},
            "high": {"no_budget": 0.55, "no_response": 0.4, "other": 0.05},
        }
    )
    lost_reasons: dict[str, float] = dict_field(price=0.4, timing=0.35, competitor=0.25)
    # lead_quality (leakage trap) given the recorded outcome, or given fit while still in review
    lead_quality: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            "qualified": {"high": 0.7, "medium": 0.3},
            "disqualified": {"medium": 0.1, "low": 0.5, "worst": 0.4},
            "open_high": {"high": 0.3, "medium": 0.5, "low": 0.2},
            "open_low": {"medium": 0.2, "low": 0.5, "worst": 0.3},
        }
    )


@dataclass(frozen=True)
class DriftParams:
    """A base-rate shift (``leadscore demo-data --drift``): from the moment ``at`` on, intent moves with
    ``transition`` instead of ``IntentParams.transition`` (a new campaign / a sales team that takes leads
    earlier). The default makes the forward moves about 3-4 times as likely (cold -> warm x3.3, warm -> hot
    x3.2-4, hot -> review, the hand-over, x3.2-4; the stays shrink by as much; review and qualification are
    unchanged), which roughly doubles the share of leads qualified within 30 days (x2.1, measured in
    docs/demo-data.md). The day-d -> d+1 transition of a
    lead uses the drifted matrix when its day d+1 starts at or after ``at``; everything else is unchanged,
    so the oracle stays exact.
    """

    at: str = "2026-01-01T00:00:00+00:00"  # month 7 of the last 12 months of the default timeline
    transition: dict[str, list[list[float]]] = dict_field(
        low=[[0.99, 0.01, 0.0, 0.0], [0.06, 0.88, 0.06, 0.0], [0.0, 0.10, 0.70, 0.20], [0, 0, 0, 1.0]],
        high=[[0.98, 0.02, 0.0, 0.0], [0.04, 0.80, 0.16, 0.0], [0.0, 0.06, 0.62, 0.32], [0, 0, 0, 1.0]],
    )


@dataclass(frozen=True)
class DemoParams:
    timeline: TimelineParams = field(default_factory=TimelineParams)
    attributes: AttributeParams = field(default_factory=AttributeParams)
    intent: IntentParams = field(default_factory=IntentParams)
    emission: EmissionParams = field(default_factory=EmissionParams)
    cadence: CadenceParams = field(default_factory=CadenceParams)
    after: AfterParams = field(default_factory=AfterParams)
    duplicate_rate: float = 0.003
    generator: str = GENERATOR
    drift: DriftParams | None = None  # None: stationary (and params.json without a "drift" key)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["drift"] is None:  # data sets generated before drift existed keep byte-identical params.json
            del d["drift"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemoParams:
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            sub = _SUB.get(f.name)
            if sub is None or d[f.name] is None:
                kw[f.name] = d[f.name]
            else:
                vals = {
                    k: (tuple(v) if isinstance(getattr(sub(), k), tuple) else v) for k, v in d[f.name].items()
                }
                kw[f.name] = sub(**vals)
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> DemoParams:
        return cls.from_dict(json.loads(text))


_SUB = {
    "timeline": TimelineParams,
    "attributes": AttributeParams,
    "intent": IntentParams,
    "emission": EmissionParams,
    "cadence": CadenceParams,
    "after": AfterParams,
    "drift": DriftParams,
}
