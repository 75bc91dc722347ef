"""Request and response bodies of the v1 API, with the bounds every input is checked against.

Events are the bulk of a score request (a thousand leads can carry tens of thousands), so an event is a
TypedDict checked entirely by pydantic-core: no model instance and no Python validator per event, and the
route gets plain dicts the live feature path reads as they are. Its timestamp bounds are pydantic's own
`ge`/`lt` against aware datetimes (a naive time is compared, and later read, as UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

from leadscore.features import schema as S
from leadscore.model.policy import Grade
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import TypedDict

EventType = Literal[S.EVENT_TYPES]  # type: ignore[valid-type]
PageKind = Literal[S.PAGE_KINDS]  # type: ignore[valid-type]
Outcome = Literal["qualified", "disqualified", "won", "lost"]
# The one definition of a lead id: the API checks it (its 422 names this pattern), the sales page too.
LEAD_ID_PATTERN = r"^[A-Za-z0-9_.:@\-]+$"
LEAD_ID_MAX_LENGTH = 128
LeadId = Annotated[
    str, StringConstraints(min_length=1, max_length=LEAD_ID_MAX_LENGTH, pattern=LEAD_ID_PATTERN)
]
# Free text: bounded, without C0/C1 control characters (a NUL byte cannot be stored in PostgreSQL text) and
# without the bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which would
# make the sales page show a name or note reversed or reordered. A note keeps tab and line breaks. Patterns,
# not Python validators: attributes come with every scored lead, and pydantic-core checks a pattern in Rust.
_BIDI = r"\u202a-\u202e\u2066-\u2069"
ShortText = Annotated[str, StringConstraints(max_length=200, pattern=rf"^[^\x00-\x1f\x7f-\x9f{_BIDI}]*$")]
LongText = Annotated[
    str, StringConstraints(max_length=2000, pattern=rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]*$")
]


def is_lead_id(value: str) -> bool:
    """Whether `value` is a valid `LeadId` (for a lead id not read through a schema: the sales page's URL)."""
    return len(value) <= LEAD_ID_MAX_LENGTH and re.fullmatch(LEAD_ID_PATTERN, value) is not None


MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+00:10 is before year 1 in UTC
        raise ValueError("must be between 2000-01-01 and 2100-01-01") from None
    if not MIN_TIME <= value < MAX_TIME:
        raise ValueError("must be between 2000-01-01 and 2100-01-01")
    return value


# The bounds in the OpenAPI document. JSON Schema has no minimum for a date-time, so a pattern admits only
# instants within them: years 2000-2099, except the first day with a positive offset and the last day with a
# negative one (those may fall outside in UTC). The service also reads a time without offset as UTC.
TIME_SCHEMA = {
    "pattern": r"^(?!2000-01-01T[^+]*\+)(?!2099-12-31T.*-[0-9]{2}:[0-9]{2}$)20[0-9]{2}-(0[1-9]|1[0-2])-"
    r"(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
    "description": "A time from 2000-01-01T00:00:00Z (included) to 2100-01-01T00:00:00Z (excluded), compared "
    "in UTC; a time without offset is read as UTC.",
}
Timestamp = Annotated[datetime, AfterValidator(_utc), Field(json_schema_extra=TIME_SCHEMA)]
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of the service's clock a client's clock may run


def _not_future(value: datetime) -> datetime:
    value = _utc(value)
    if value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError(
            f"must not be in the future (more than {CLOCK_SKEW.seconds // 60} minutes ahead of the "
            "service's clock)"
        )
    return value


# A moment that has happened: what is stored as a fact (a lead's creation, an event, feedback).
def _past_time_schema(schema: dict[str, Any]) -> None:
    """The document's bounds of a `PastTime`. A pattern cannot follow the clock, so it admits times up to the
    end of the year before the document was made (every one of them is accepted; the service accepts up to
    5 minutes ahead of its clock)."""
    last = datetime.now(UTC).year - 1
    tens, ones = divmod(last % 100, 10)
    years = "20(?:" + (f"[0-{tens - 1}][0-9]|" if tens else "") + f"{tens}[0-{ones}])"
    schema.update(
        TIME_SCHEMA,
        pattern=TIME_SCHEMA["pattern"]
        .replace("2099-12-31T", f"{last}-12-31T")
        .replace("20[0-9]{2}-", years + "-", 1),
        description=f"A time from 2000-01-01T00:00:00Z (included) to {last + 1}-01-01T00:00:00Z "
        "(excluded) in this document; the service accepts up to 5 minutes ahead of its "
        "clock (a stored fact has happened). A time without offset is read as UTC.",
    )


PastTime = Annotated[datetime, AfterValidator(_not_future), Field(json_schema_extra=_past_time_schema)]
# The same bounds without a Python call (the value keeps its offset; a naive time means UTC).
EventTime = Annotated[datetime, Field(ge=MIN_TIME, lt=MAX_TIME, json_schema_extra=TIME_SCHEMA)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Attributes(Strict):
    source: ShortText | None = None
    industry: ShortText | None = None
    company_size: ShortText | None = None
    country: ShortText | None = None
    job_title: ShortText | None = None
    email_domain: ShortText | None = None


class Event(TypedDict):
    """One interaction of a lead: its type, when it happened and, for web visits, the kind of page."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    type: EventType
    timestamp: EventTime
    page: NotRequired[PageKind | None]


class LeadIn(Strict):
    """A lead to score. Give `created_at`, `attributes` and `events` (stateless), or only `lead_id` to score
    a lead stored through PUT /v1/leads and POST /v1/events."""

    # The rule `score_request` enforces, stated in the OpenAPI document: with attributes or events, created_at
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["created_at"], "properties": {"created_at": {"type": "string"}}},
                {"properties": {"attributes": {"type": "null"}, "events": {"type": "null"}}},
            ]
        }
    )
    lead_id: LeadId
    created_at: Timestamp | None = None
    attributes: Attributes | None = None
    events: list[Event] | None = Field(default=None, max_length=5000)
    as_of: Timestamp | None = Field(default=None, description="Score as of this moment (default: now).")


class ScoreRequest(Strict):
    leads: list[LeadIn] = Field(min_length=1, max_length=1000)


class Reason(BaseModel):
    feature: str
    value: str | int | float | None
    impact: float = Field(description="Contribution to the log-odds; all contributions + base = logit.")
    points: int = Field(description="20 points double the odds of qualifying.")
    text: str


class Explanation(BaseModel):
    base: float
    logit: float
    contributions: dict[str, float]


class OutOfRange(BaseModel):
    """A value outside the range the model learned from: its contribution is an extrapolation, so it is
    not among the reasons (the score still counts it)."""

    feature: str
    label: str
    value: int | float
    trained_min: float = Field(description="The smallest value among the rows the model was fit on.")
    trained_max: float = Field(description="The largest value among the rows the model was fit on.")
    message: str


class ScoreResult(BaseModel):
    lead_id: str
    probability: float
    score: int
    grade: Grade
    qualified: bool = Field(
        description="Hand the lead to sales: its probability is at or above the handoff "
        "threshold, or it was drawn for exploration (`explored`)."
    )
    explored: bool = Field(
        description="Handed over for exploration: below the threshold, but among the "
        "LEADSCORE_EXPLORATION_SHARE of leads drawn (per lead, never re-rolled) so "
        "sales' verdicts show what the model misses."
    )
    propensity: float = Field(
        description="The probability that this lead is handed over under the policy in "
        "force: 1 at or above the threshold, the exploration share below it."
    )
    reasons: list[Reason] = Field(
        description="Top 5 raising, then top 5 lowering, each moving the score by at "
        "least one point; values in out_of_range are never reasons."
    )
    insight: str | None = None
    out_of_range: list[OutOfRange] = Field(
        default_factory=list,
        description=("The lead's values outside the range the model learned from (empty when none)."),
    )
    explanation: Explanation | None = None


class ModelRef(BaseModel):
    name: str
    version: str | None


class ScoreResponse(BaseModel):
    model: ModelRef
    results: list[ScoreResult]


class FeedbackIn(Strict):
    # The rule `save_feedback` enforces, stated in the OpenAPI document: a reason only with disqualified
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"reason": {"type": "null"}}},
                {"properties": {"outcome": {"const": "disqualified"}}},
            ]
        }
    )
    lead_id: LeadId
    outcome: Outcome
    reason: Literal[S.DISQUALIFY_REASONS] | None = None  # type: ignore[valid-type]
    note: LongText | None = None
    at: PastTime | None = None
    idempotency_key: (
        Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")] | None
    ) = None


class FeedbackOut(BaseModel):
    id: int
    lead_id: str
    outcome: str
    reason: str | None
    note: str | None
    at: datetime
    received_at: datetime
    source: str
    duplicate: bool = False


class LeadUpsert(Strict):
    created_at: PastTime
    attributes: Attributes = Attributes()


class LeadEvent(TypedDict):
    """An event of a stored lead: an `Event` of `lead_id` that has happened (a stored event is a fact; a
    stateless score request's events are only read up to its `as_of`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    lead_id: LeadId
    type: EventType
    timestamp: PastTime
    page: NotRequired[PageKind | None]


class EventBatch(Strict):
    events: list[LeadEvent] = Field(min_length=1, max_length=10_000)
