"""The lead list (filtered, paginated) and the lead page, where sales give their verdict. Feedback is stored
by `save_feedback`, the same function behind POST /v1/feedback, with source "ui"."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from leadscore.model.policy import GRADES
from leadscore.model.reasons import notable
from leadscore.serve import store
from leadscore.serve.deps import service_of
from leadscore.serve.routes.feedback import save_feedback
from leadscore.serve.schemas import FeedbackIn, is_lead_id
from leadscore.serve.ui import charts, queries, responses, session
from leadscore.serve.ui.format import OUTCOME_LABELS, age, lead_url, out_of_range, strongest, trend
from pydantic import ValidationError

log = logging.getLogger("leadscore.serve.ui")
router = APIRouter(prefix="/ui")
PAGE_SIZE = 50
MAX_PAGE = 100_000
SORT_LABELS: dict[store.ListSort, str] = {"score": "Highest score", "handed_over": "Newly handed over"}
assert set(SORT_LABELS) == set(store.LIST_SORTS), "a sort of the lead list has no label on the sales page"


def _parse_filters(
    params: Mapping[str, str],
) -> tuple[queries.ListFilter, store.ListSort, int, dict[str, Any], list[str]]:
    errors = []
    sort_text = (params.get("sort") or "").strip() or "score"
    sort = next((s for s in store.LIST_SORTS if s == sort_text), None)
    if sort is None:
        errors.append(f"sort: must be one of {', '.join(store.LIST_SORTS)}")
        sort = "score"
    grade = (params.get("grade") or "").strip().upper() or None
    if grade and grade not in GRADES:
        errors.append(f"grade: must be one of {', '.join(GRADES)}")
        grade = None
    source = (params.get("source") or "").strip() or None
    if source and len(source) > 200:
        errors.append("source: at most 200 characters")
        source = None
    since_text = (params.get("since") or "").strip()
    since = None
    if since_text:
        try:
            d = date.fromisoformat(since_text)
            since = datetime(d.year, d.month, d.day, tzinfo=UTC)
            if not 2000 <= d.year < 2100:
                raise ValueError
        except ValueError:
            errors.append("new since: give a date like 2025-01-31")
            since, since_text = None, ""
    unreviewed = (params.get("unreviewed") or "") in ("1", "on", "true", "yes")
    try:
        page = int(params.get("page") or 1)
        if not 1 <= page <= MAX_PAGE:
            raise ValueError
    except ValueError:
        errors.append(f"page: must be a whole number from 1 to {MAX_PAGE}")
        page = 1
    shown = {
        "grade": grade or "",
        "source": source or "",
        "since": since_text,
        "unreviewed": unreviewed,
        "sort": "" if sort == "score" else sort,  # the default order stays out of the links
    }
    return queries.ListFilter(grade, source, since, unreviewed), sort, page, shown, errors


def _query_string(shown: dict[str, Any], **changes: Any) -> str:
    q = {k: v for k, v in {**shown, **changes}.items() if v not in (None, "", False)}
    if q.get("unreviewed") is True:
        q["unreviewed"] = "1"
    return urlencode(q)


@router.get("/leads")
def lead_list(request: Request) -> Response:
    sess = session.current(request)
    if not sess:
        return responses.to_signin(request)
    f, sort, page, shown, errors = _parse_filters(request.query_params)
    engine = service_of(request).engine
    rows, total = queries.lead_list(engine, f, PAGE_SIZE, (page - 1) * PAGE_SIZE, sort)
    now = datetime.now(UTC)
    for r in rows:
        r["trend"] = trend(r["score"], r["previous_score"])
        r["top"] = strongest(r["reasons"])
        r["source"] = (r.get("attributes") or {}).get("source")
        r["age"] = age(r["created_at"], now)
    pages = max(1, -(-total // PAGE_SIZE))
    return responses.render(
        request,
        "leads.html",
        {
            "nav": "leads",
            "rows": rows,
            "total": total,
            "page": page,
            "pages": pages,
            "first": (page - 1) * PAGE_SIZE + 1 if rows else 0,
            "last": (page - 1) * PAGE_SIZE + len(rows),
            "prev_qs": _query_string(shown, page=page - 1) if page > 1 else None,
            "next_qs": _query_string(shown, page=page + 1) if page < pages else None,
            "filters": shown,
            "sort": sort,
            "sort_labels": SORT_LABELS,
            "clear_qs": _query_string({"sort": shown["sort"]}),
            "sources": queries.sources(engine),
            "filtered": any(v for k, v in shown.items() if k != "sort"),
            "error": "; ".join(errors) or None,
        },
        422 if errors else 200,
        sess,
    )


def _lead_context(request: Request, lead_id: str) -> dict[str, Any] | None:
    engine = service_of(request).engine
    lead = queries.lead_row(engine, lead_id)
    history = store.score_history(engine, lead_id, limit=50)
    if lead is None and not history:
        return None
    latest = history[0] if history else None
    reasons = (latest or {}).get("reasons") or []
    model = service_of(request).holder.model
    threshold = round(100 * model.policy.threshold) if model is not None else None
    activity = queries.activity(engine, lead_id, latest["as_of"] if latest else None)
    feedback = list(reversed(store.feedback_for(engine, lead_id)))
    previous = history[1]["score"] if len(history) > 1 else None
    points = [
        (h["as_of"] or h["scored_at"], h["score"], h["grade"]) for h in reversed(history)
    ]  # the moment scored
    return {
        "nav": "leads",
        "lead_id": lead_id,
        "lead": lead,
        "attributes": (lead or {}).get("attributes") or {},
        "latest": latest,
        "handed_over_at": queries.handed_over_at(engine, lead_id),
        "trend": trend(latest["score"], previous) if latest else None,
        "positives": sorted(
            (r for r in reasons if notable(r) and r["impact"] > 0), key=lambda r: -r["impact"]
        ),
        "negatives": sorted(
            (r for r in reasons if notable(r) and r["impact"] < 0), key=lambda r: r["impact"]
        ),
        "out_of_range": out_of_range(model, latest),
        "threshold": threshold,
        "chart": charts.score_history(points, threshold),
        "n_scores": len(history),
        "activity": activity,
        "feedback": feedback,
        "form_keys": {o: secrets.token_urlsafe(18) for o in OUTCOME_LABELS},
        "saved": None,
        "values": {"reason": "", "note": ""},
    }


@router.get("/leads/{lead_id}")
def lead_page(request: Request, lead_id: str) -> Response:
    sess = session.current(request)
    if not sess:
        return responses.to_signin(request)
    ctx = _lead_context(request, lead_id) if is_lead_id(lead_id) else None
    if ctx is None:
        return responses.not_found(request, sess, lead_id)
    saved = request.query_params.get("saved", "")
    if saved.isdigit() and len(saved) < 19:
        ctx["saved"] = queries.feedback_by_id(service_of(request).engine, int(saved), lead_id)
    return responses.render(request, "lead.html", ctx, 200, sess)


@router.post("/leads/{lead_id}/feedback")
async def lead_feedback(request: Request, lead_id: str) -> Response:
    sess = session.current(request)
    if not sess:
        return responses.to_signin(request)
    form = await request.form()
    if not session.valid_csrf(sess, responses.form_text(form, "csrf")):
        log.warning("sales page: feedback refused for a bad CSRF token")
        return responses.forbidden(request, sess)
    ctx = _lead_context(request, lead_id) if is_lead_id(lead_id) else None
    if ctx is None:
        return responses.not_found(request, sess, lead_id)
    outcome = str(form.get("outcome") or "")
    reason = str(form.get("reason") or "").strip() or None
    note = str(form.get("note") or "").strip() or None
    form_key = str(form.get("form_key") or "").strip()
    ctx["values"] = {"reason": reason or "", "note": note or ""}
    error = None
    if outcome not in OUTCOME_LABELS:
        error = f"outcome: must be one of {', '.join(OUTCOME_LABELS)}"
    elif outcome == "disqualified" and reason is None:
        error = "reason: choose why the lead is not qualified"
    elif outcome == "disqualified" and reason == "other" and note is None:
        error = "note: say why in a few words when the reason is 'Other'"
    elif outcome != "disqualified":
        reason = note = None  # the reason and note belong to "Not qualified" only
    if not error and not (8 <= len(form_key) <= 100):
        error = "form_key: missing; reload the page and try again"
    if error:
        return responses.render(request, "lead.html", {**ctx, "error": error}, 422, sess)
    try:
        fb = FeedbackIn.model_validate(
            {
                "lead_id": lead_id,
                "outcome": outcome,
                "reason": reason,
                "note": note,
                "idempotency_key": f"ui:{form_key}",
            }
        )
        row = save_feedback(service_of(request).engine, fb, source="ui")
    except ValidationError as e:
        error = "; ".join(
            f"{'.'.join(str(p) for p in x['loc']) or 'form'}: {x['msg']}" for x in e.errors()[:5]
        )
        return responses.render(request, "lead.html", {**ctx, "error": error}, 422, sess)
    except HTTPException as e:
        detail = (
            e.detail
            if isinstance(e.detail, str)
            else "; ".join(f"{d['field']}: {d['reason']}" for d in e.detail)
        )
        return responses.render(request, "lead.html", {**ctx, "error": detail}, e.status_code, sess)
    log.info(
        "sales page: feedback %s stored (id %s%s)",
        outcome,
        row["id"],
        ", a repeat" if row["duplicate"] else "",
    )
    return responses.redirect(f"{lead_url(lead_id)}?saved={row['id']}#feedback")
