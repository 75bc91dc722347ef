"""All catalogue features for rows (lead, as_of): the one function training, batch scoring and a live request
call (through the adapters `frames`, pandas in, and `live`, a request's dicts in).

Inputs are plain arrays (see `LeadArrays`, `events.EventArrays`), outputs a dict name -> array aligned with
the rows. A value for a row is computed only from what was known strictly before its as_of: the lead's
attributes and age here, its events in `events.event_features` (the counting kernel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from leadscore.features import catalog
from leadscore.features.catalog import DAY_MS
from leadscore.features.events import MAX_LEADS_PER_BATCH, EventArrays, event_features
from leadscore.features.schema import FREE_EMAIL_DOMAINS
from leadscore.features.titles import seniority_many


@dataclass(frozen=True, slots=True)
class LeadArrays:
    """Leads, one entry per lead code 0..n-1. Attribute arrays hold str or None."""

    created_ms: npt.NDArray[np.int64]  # ms since the Unix epoch, UTC
    attributes: dict[str, npt.NDArray[np.object_]]  # schema.LEAD_ATTRIBUTES


def _email_type(domain: object) -> str | None:
    if not isinstance(domain, str) or not domain:
        return None
    return "free" if domain.strip().lower() in FREE_EMAIL_DOMAINS else "corporate"


def profile_features(
    leads: LeadArrays, row_lead: npt.NDArray[np.int64], as_of_ms: npt.NDArray[np.int64]
) -> dict[str, np.ndarray]:
    """Fit features from the lead's attributes, plus the lead's age at as_of."""
    a = leads.attributes
    per_lead = {
        "source": a["source"],
        "industry": a["industry"],
        "company_size": a["company_size"],
        "country": a["country"],
        "seniority": seniority_many(a["job_title"]),
        "email_type": np.array([_email_type(d) for d in a["email_domain"]], dtype=object),
    }
    out = {k: np.asarray(v, dtype=object)[row_lead] for k, v in per_lead.items()}
    out["lead_age_days"] = np.floor((as_of_ms - leads.created_ms[row_lead]) / DAY_MS).astype(np.float64)
    return out


def build(
    leads: LeadArrays, events: EventArrays, row_lead: npt.ArrayLike, as_of_ms: npt.ArrayLike
) -> dict[str, np.ndarray]:
    """All catalogue features for rows (lead code, as_of in ms), in catalogue order."""
    if len(leads.created_ms) >= MAX_LEADS_PER_BATCH:
        raise ValueError(f"at most {MAX_LEADS_PER_BATCH - 1} leads per feature batch")
    rows = np.asarray(row_lead, dtype=np.int64)
    as_of = np.asarray(as_of_ms, dtype=np.int64)
    values = profile_features(leads, rows, as_of)
    values.update(event_features(events, rows, as_of))
    return {spec.name: values[spec.name] for spec in catalog.FEATURES}
