"""The one shape of every error body: {"detail": [{"field": ..., "reason": ...}, ...]}."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MAX_ERRORS = 50  # a body with thousands of mistakes gets the first 50
INTERNAL_ERROR = [{"field": "request", "reason": "internal error; see the service log"}]  # the body of a 500


def field_of(loc: Sequence) -> str:
    """A pydantic error location as a dotted field name, without the "body"/"query"/"path" prefix."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def validation_detail(errors: Iterable[dict]) -> list[dict]:
    """pydantic / FastAPI validation errors as field + reason."""
    out = []
    for e in errors:
        out.append({"field": field_of(e.get("loc", ())), "reason": e.get("msg", "invalid")})
        if len(out) == MAX_ERRORS:
            break
    return out


def error_detail(detail, field: str = "request") -> list[dict]:
    """An HTTPException's detail as field + reason items (already such items: kept as they are)."""
    if isinstance(detail, list) and all(isinstance(d, dict) and "reason" in d for d in detail):
        return detail
    return [{"field": field, "reason": str(detail)}]
