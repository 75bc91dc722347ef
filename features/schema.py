"""The canonical data model: the three tables every Leadscore input is made of.

`leads` (one row per lead), `events` (timestamped interactions) and `outcomes` (what sales said and what
followed). Column names, types and allowed values live here and nowhere else; `docs/data-model.md` is the
prose version of this module.
"""

from __future__ import annotations

from typing import Final

# --- leads -----------------------------------------------------------------------------------------------
LEAD_ID: Final = "lead_id"
CREATED_AT: Final = "created_at"
# Attributes known when marketing creates the lead. Extra columns in a leads file are kept as custom
# attributes and go through the leakage audit before a model may use them.
LEAD_ATTRIBUTES: Final = ("source", "industry", "company_size", "country", "job_title", "email_domain")
LEAD_COLUMNS: Final = (LEAD_ID, CREATED_AT, *LEAD_ATTRIBUTES)

SOURCES: Final = (
    "organic_search",
    "paid_search",
    "social",
    "referral",
    "webinar",
    "event",
    "partner",
    "direct",
    "outbound",
)
INDUSTRIES: Final = (
    "software",
    "finance",
    "healthcare",
    "retail",
    "manufacturing",
    "education",
    "government",
    "media",
    "consulting",
    "other",
)
COMPANY_SIZES: Final = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")

# --- events ----------------------------------------------------------------------------------------------
EVENT_TYPE: Final = "type"
TIMESTAMP: Final = "timestamp"
PAGE: Final = "page"
EVENT_COLUMNS: Final = (LEAD_ID, EVENT_TYPE, TIMESTAMP, PAGE)
EVENT_TYPES: Final = (
    "email_sent",
    "email_opened",
    "email_clicked",
    "web_visit",
    "content_download",
    "webinar_registered",
    "webinar_attended",
    "form_submitted",
    "demo_requested",
    "unsubscribed",
    "sales_call",
    "meeting",
    "handed_to_sales",
)
PAGE_KINDS: Final = ("pricing", "docs", "blog", "careers", "home")

# --- outcomes --------------------------------------------------------------------------------------------
OUTCOME: Final = "outcome"
OUTCOME_AT: Final = "at"
REASON: Final = "reason"
OUTCOME_COLUMNS: Final = (LEAD_ID, OUTCOME, OUTCOME_AT, REASON)
OUTCOMES: Final = ("qualified", "disqualified", "opportunity", "won", "lost")
DISQUALIFY_REASONS: Final = ("bad_fit", "no_budget", "student", "competitor", "spam", "no_response", "other")

# --- selection (optional) --------------------------------------------------------------------------------
# How each lead came to be labelled: each moment the handoff policy handed it to sales (a row per moment;
# one row with null if never) and the probability that it was handed over then (at its last score if never).
# Training weights labels by 1 / propensity (docs/models.md, "Exploration and inverse-propensity weights").
HANDED_AT: Final = "handed_at"
PROPENSITY: Final = "propensity"
SELECTION_COLUMNS: Final = (LEAD_ID, HANDED_AT, PROPENSITY)

# Free-mail domains: a lead with one of these has no corporate address.
FREE_EMAIL_DOMAINS: Final = frozenset(
    {
        "gmail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "aol.com",
        "icloud.com",
        "gmx.de",
        "web.de",
        "mail.ru",
        "yandex.ru",
        "qq.com",
        "163.com",
        "protonmail.com",
        "live.com",
        "msn.com",
        "orange.fr",
        "free.fr",
        "libero.it",
        "hotmail.co.uk",
        "yahoo.co.uk",
    }
)
