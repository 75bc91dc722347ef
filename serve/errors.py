"""The one shape of every error body: {"detail": [{"field": ..., "reason": ...}, ...]}, and its declaration in
the OpenAPI document (`ErrorBody`, `error_responses(...)` for a route's `responses=`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_ERRORS = 50  # a body with thousands of mistakes gets the first 50
INTERNAL_ERROR = [{"field": "request", "reason": "internal error; see the service log"}]  # the body of a 500


class ErrorItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(
        description="What is at fault: the input's dotted path (`leads.0.events.3.timestamp`, "
        "`lead_id`, `since`), or `body`, `authorization`, `model`, `request`."
    )
    reason: str = Field(description="Why, in words.")


class ErrorBody(BaseModel):
    """The body of every error (4xx and 5xx): one item per problem found, at most 50."""

    model_config = ConfigDict(extra="forbid")
    detail: list[ErrorItem] = Field(min_length=1, max_length=MAX_ERRORS)


# What each status means wherever it is answered; a route gives its own words with (status, description).
MEANING = {
    400: "The body could not be read (it is not UTF-8 JSON)",
    401: "No valid API key: send `Authorization: Bearer <key>` (or `X-API-Key`)",
    403: "The key's role may not do this",
    404: "Not found",
    409: "Conflicts with what is stored",
    413: "The body is larger than LEADSCORE_MAX_BODY_BYTES",
    422: "Invalid input: each item names the field and the reason",
    429: "Too many wrong keys from this address lately: retry after `Retry-After` seconds",
    500: "Internal error (a bug); the service log has the details",
    503: "No model is loaded",
}
KEYED = (401, 403, 429)  # what every route behind an API key may answer (serve/auth.py)
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds to wait",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def error_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's error responses for `responses=`: each status (or (status, description)) with `ErrorBody`,
    and 500, which any route answers on a bug."""
    out: dict[int | str, dict[str, Any]] = {}
    for item in (*statuses, 500):
        status, description = item if isinstance(item, tuple) else (item, MEANING[item])
        out[status] = {"model": ErrorBody, "description": description}
        if status in _HEADERS:
            out[status]["headers"] = _HEADERS[status]
    return out


def field_of(loc: Sequence[object]) -> str:
    """A pydantic error location as a dotted field name, without the "body"/"query"/"path" prefix."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def validation_detail(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """pydantic / FastAPI validation errors as field + reason."""
    out = []
    for e in errors:
        out.append({"field": field_of(e.get("loc", ())), "reason": e.get("msg", "invalid")})
        if len(out) == MAX_ERRORS:
            break
    return out


def error_detail(detail: object, field: str = "request") -> list[dict[str, str]]:
    """An HTTPException's detail as field + reason items (already such items: kept as they are)."""
    if isinstance(detail, list) and all(isinstance(d, dict) and "reason" in d for d in detail):
        return detail
    return [{"field": field, "reason": str(detail)}]
