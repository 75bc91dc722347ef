"""Leads as callers hand them to `ScoringModel.score`, into the features the model reads.

Two shapes come in: lead mappings (the API's validated leads, stored leads, `leadscore import`'s rows, a
model's example) and a pandas frame (the MLflow pyfunc's input: one row per lead, `events` as a JSON list,
or, for a model trained on a flat export, that export's columns). Each lead is scored as of its own `as_of`
when it has one, else as of the moment the caller gives; the features are those of `features.live`, the
path the live service has always used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from leadscore.features import schema as S
from leadscore.features.live import lead_features, to_ms

Leads: TypeAlias = Sequence[Mapping[str, Any]] | pd.DataFrame


@dataclass(frozen=True, slots=True)
class LeadValues:
    """The features of n leads (name -> one value per lead), their ids and the moment each is scored as of
    (as given: a datetime, an ISO string or None for a flat row)."""

    values: dict[str, np.ndarray]
    lead_ids: list[str]
    as_of: list[Any]


def lead_values(leads: Leads, as_of: datetime | str, flat: Mapping[str, Any] | None = None) -> LeadValues:
    """`leads` (mappings or a frame) -> their features at each lead's own `as_of`, else at `as_of`.

    `flat`: the column spec of a model trained on a flat export (`info["flat"]`); such a model reads a
    frame's columns as they are (`features.table.flat_values`), not leads and events."""
    if flat is not None:
        if not isinstance(leads, pd.DataFrame):
            leads = pd.DataFrame(list(leads))
        from leadscore.features.table import flat_values

        values, ids = flat_values(leads, dict(flat))
        return LeadValues(values, ids, [as_of] * len(ids))
    frame = isinstance(leads, pd.DataFrame)
    rows = frame_to_leads(leads) if isinstance(leads, pd.DataFrame) else leads
    moments = [lead.get("as_of") or as_of for lead in rows]
    # a frame holds raw events (the pyfunc's input, e.g. straight from a warehouse): the loader's rule
    # removes their exact duplicates; the API's leads are scored as sent
    values = lead_features(rows, [to_ms(t) for t in moments], drop_duplicates=frame)
    return LeadValues(values, [lead[S.LEAD_ID] for lead in rows], moments)


class InputError(ValueError):
    """A pyfunc input row that cannot be scored; the message names the lead, the column and the reason."""


def frame_to_leads(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Pyfunc input rows (one per lead) -> lead mappings; NaN cells are missing.

    `events`: a JSON list, a list or array of mappings (Spark's `array<struct>`), or null (no events).
    Times (`created_at`, `as_of`, each event's `timestamp`) must say their offset: an ISO-8601 string with
    `Z` or `+hh:mm`, or a time-zone-aware timestamp. A naive one is refused (InputError): read as UTC it
    would silently shift every lead of a non-UTC source (e.g. a Spark timestamp cast to a string in the
    session's time zone)."""
    leads = []
    for rec in df.to_dict(orient="records"):
        lead = {str(k): (None if _missing(v) else v) for k, v in rec.items()}
        lead_id = lead.get(S.LEAD_ID)
        events = lead.get("events")
        if isinstance(events, str):
            events = json.loads(events) if events else []
        events = [] if events is None else list(events)
        for column in (S.CREATED_AT, "as_of"):
            if lead.get(column) is not None:
                _aware(lead[column], lead_id, column)
        for e in events:
            _aware(e.get("timestamp"), lead_id, "events.timestamp")
        lead["events"] = events
        leads.append(lead)
    return leads


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NaT


def _aware(value: object, lead_id: object, column: str) -> None:
    """Refuse a time without an offset (see `frame_to_leads`)."""
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"lead {lead_id!r}, {column}: not an ISO-8601 time: {value[:40]!r}") from None
    if not isinstance(when, datetime):
        raise InputError(f"lead {lead_id!r}, {column}: expected a time, got {type(value).__name__}")
    if when.tzinfo is None:
        raise InputError(
            f"lead {lead_id!r}, {column}: {str(value)[:40]!r} has no time zone; give an offset "
            "(2024-05-01T09:30:00Z or +02:00) or a time-zone-aware timestamp (leadscore.spark.pyfunc_input "
            "does this for Spark timestamps)"
        )


def feature_snapshots(values: Mapping[str, np.ndarray], names: Sequence[str]) -> list[dict[str, Any]]:
    """Each row's features as the score log keeps them: the values the model was given, numbers exactly as
    computed (NaN is written as null), categories as they were sent."""
    # one lead, the API's hot path: the column lists' set-up would cost more than the row (docs/benchmarks.md)
    if names and len(values[names[0]]) == 1:
        return [{name: v.item() if isinstance(v := values[name], np.ndarray) else v[0] for name in names}]
    columns = [np.asarray(values[name]).tolist() for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
