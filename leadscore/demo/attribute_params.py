"""Who the demo leads are: independent categorical attributes (source, industry, size, seniority, email,
country) and their additive weight in logit P(fit = high). Part of ``DemoParams`` (``params.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SENIORITIES = ("executive", "vp_director", "manager", "senior_ic", "ic", "intern", "student")


def dict_field(**kw: Any) -> Any:
    """A dataclass field whose default is the dict `kw` (each instance gets it through a default factory)."""
    return field(default_factory=lambda: kw)


@dataclass(frozen=True)
class AttributeParams:
    """Independent categorical attributes; logit P(fit=high) is additive in them."""

    fit_intercept: float = -0.15
    source_probs: dict[str, float] = dict_field(
        organic_search=0.22,
        paid_search=0.18,
        social=0.12,
        referral=0.08,
        webinar=0.10,
        event=0.06,
        partner=0.07,
        direct=0.10,
        outbound=0.07,
    )
    source_fit: dict[str, float] = dict_field(
        organic_search=0.0,
        paid_search=-0.2,
        social=-0.5,
        referral=0.9,
        webinar=0.3,
        event=0.6,
        partner=0.4,
        direct=0.1,
        outbound=-0.3,
    )
    industry_probs: dict[str, float] = dict_field(
        software=0.25,
        finance=0.12,
        healthcare=0.10,
        retail=0.10,
        manufacturing=0.10,
        education=0.10,
        government=0.05,
        media=0.06,
        consulting=0.07,
        other=0.05,
    )
    # consulting plays the "competitors' industry" (agencies reselling a rival tool)
    industry_fit: dict[str, float] = dict_field(
        software=0.6,
        finance=0.4,
        healthcare=0.2,
        retail=0.0,
        manufacturing=0.2,
        education=-0.8,
        government=-0.4,
        media=-0.2,
        consulting=-0.7,
        other=-0.3,
    )
    size_probs: dict[str, float] = dict_field(
        **{"1-10": 0.25, "11-50": 0.22, "51-200": 0.20, "201-1000": 0.15, "1001-5000": 0.10, "5000+": 0.08}
    )
    size_fit: dict[str, float] = dict_field(
        **{"1-10": -1.2, "11-50": -0.3, "51-200": 0.3, "201-1000": 0.7, "1001-5000": 0.8, "5000+": 0.6}
    )
    seniority_probs: dict[str, float] = dict_field(
        executive=0.08, vp_director=0.12, manager=0.22, senior_ic=0.18, ic=0.22, intern=0.06, student=0.12
    )
    seniority_fit: dict[str, float] = dict_field(
        executive=0.9, vp_director=1.0, manager=0.5, senior_ic=0.1, ic=-0.3, intern=-1.2, student=-2.0
    )
    free_email_prob: float = 0.35
    free_email_fit: float = -0.9
    country_probs: dict[str, float] = dict_field(
        US=0.28,
        GB=0.10,
        DE=0.12,
        FR=0.06,
        NL=0.04,
        ES=0.03,
        IN=0.08,
        BR=0.05,
        JP=0.04,
        AU=0.04,
        CA=0.05,
        SG=0.03,
        MX=0.04,
        ZA=0.04,
    )
    # fixed UTC offset (minutes) per country: the "mixed time zones" trap
    country_offset_min: dict[str, int] = dict_field(
        US=-300,
        GB=0,
        DE=60,
        FR=60,
        NL=60,
        ES=60,
        IN=330,
        BR=-180,
        JP=540,
        AU=600,
        CA=-300,
        SG=480,
        MX=-360,
        ZA=120,
    )
    # missing completely at random
    missing: dict[str, float] = dict_field(industry=0.08, company_size=0.10, country=0.03, job_title=0.05)
