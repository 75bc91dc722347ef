"""The sales page under /ui: sign-in, lead list, lead page with feedback, summary. Server-rendered, no JS.

Every page needs a session (see `session.py`); every form carries a CSRF token checked on POST; every value
reaches the page through Jinja2 with autoescape on. Feedback is stored by `save_feedback`, the same function
behind POST /v1/feedback, with source "ui".
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from leadscore.features import schema as S
from leadscore.model.reasons import notable
from leadscore.serve import auth, store
from leadscore.serve.routes.feedback import save_feedback
from leadscore.serve.routes.leads import TREND_POINTS
from leadscore.serve.schemas import FeedbackIn
from leadscore.serve.ui import charts, queries, session
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("leadscore.serve.ui")
HERE = Path(__file__).parent
PAGE_SIZE = 50
MAX_PAGE = 100_000
LEAD_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")
GRADES = ("A", "B", "C", "D")
SUMMARY_DAYS = (30, 90, 365)

OUTCOME_LABELS = {"qualified": "Qualified", "disqualified": "Not qualified", "won": "Won", "lost": "Lost"}
REASON_LABELS = {
    "bad_fit": "Bad fit",
    "no_budget": "No budget",
    "student": "Student",
    "competitor": "Competitor",
    "spam": "Spam",
    "no_response": "No response",
    "other": "Other",
}
assert set(REASON_LABELS) == set(S.DISQUALIFY_REASONS), "a disqualify reason has no label on the sales page"
EVENT_LABELS = {
    "email_sent": "Marketing email sent",
    "email_opened": "Opened an email",
    "email_clicked": "Clicked an email",
    "web_visit": "Visited the website",
    "content_download": "Downloaded content",
    "webinar_registered": "Registered for a webinar",
    "webinar_attended": "Attended a webinar",
    "form_submitted": "Submitted a form",
    "demo_requested": "Requested a demo",
    "unsubscribed": "Unsubscribed",
    "sales_call": "Sales call",
    "meeting": "Meeting",
    "handed_to_sales": "Handed to sales",
}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


# --- formatting --------------------------------------------------------------------------------------------
def fmt_time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "–"


def fmt_day(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%d %b %Y") if t else "–"


def age(t: datetime | None, now: datetime | None = None) -> str:
    if t is None:
        return "–"
    seconds = ((now or datetime.now(UTC)) - t).total_seconds()
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    days = seconds / 86400
    if days < 60:
        return f"{int(days)} d"
    if days < 730:
        return f"{int(days // 30.4)} mo"
    return f"{int(days // 365.25)} y"


def signed(n: int) -> str:
    return f"+{n}" if n > 0 else f"−{-n}" if n < 0 else "0"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def trend(score: int, previous: int | None) -> tuple[str, str, str]:
    """(arrow, css class, words) from the last two scores, with the API's threshold for a move."""
    if previous is None:
        return "•", "new", "first score"
    delta = score - previous
    if delta > TREND_POINTS:
        return "▲", "up", f"up {delta} since the last score"
    if delta < -TREND_POINTS:
        return "▼", "down", f"down {-delta} since the last score"
    return "▶", "flat", "steady since the last score"


def strongest(reasons: list[dict] | None, n: int = 2) -> list[dict]:
    return sorted((r for r in reasons or [] if notable(r)), key=lambda r: -abs(r.get("impact") or 0))[:n]


def out_of_range(model, latest: dict | None) -> list[dict]:
    """The shown score's values outside the range its model learned from (`ScoringModel.out_of_range`), from
    the features the score log kept; none when the model serving now is not the one that scored."""
    if model is None or latest is None or latest.get("model_version") != model.version:
        return []
    features = latest.get("features") or {}
    if not all(name in features for name in model.encoder.features):
        return []
    return model.out_of_range(
        {
            name: [
                features[name]
                if features[name] is not None
                else (None if name in model.encoder.vocab else float("nan"))
            ]
            for name in model.encoder.features
        }
    )[0]


def outcome_label(fb: dict | None) -> str:
    if not fb:
        return ""
    text = OUTCOME_LABELS.get(fb["outcome"], fb["outcome"])
    if fb.get("reason"):
        text += f" ({REASON_LABELS.get(fb['reason'], fb['reason']).lower()})"
    return text


def event_label(e: dict) -> str:
    text = EVENT_LABELS.get(e["type"], e["type"])
    return f"{text} ({e['page']})" if e.get("page") else text


def lead_url(lead_id: str) -> str:
    return f"/ui/leads/{quote(lead_id, safe='')}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=fmt_time,
        day=fmt_day,
        age=age,
        signed=signed,
        pct=pct,
        outcome=outcome_label,
        event=event_label,
        lead_url=lead_url,
    )
    env.globals.update(OUTCOME_LABELS=OUTCOME_LABELS, REASON_LABELS=REASON_LABELS, GRADES=GRADES)
    return env


templates = Jinja2Templates(env=_environment())
_css = HERE / "static" / "ui.css"
CSS_URL = "/ui/static/ui.css?v=" + (
    hashlib.sha256(_css.read_bytes()).hexdigest()[:10] if _css.exists() else "0"
)


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(
    request: Request, name: str, context: dict, status: int = 200, sess: session.Session | None = None
) -> HTMLResponse:
    ctx = {
        "session": sess,
        "csrf": sess.csrf if sess else "",
        "css_url": CSS_URL,
        "nav": "",
        "error": None,
        **context,
    }
    return _secure(templates.TemplateResponse(request, name, ctx, status_code=status))


def redirect(url: str) -> RedirectResponse:
    return _secure(RedirectResponse(url, status_code=303))


def _safe_next(value: str | None) -> str:
    """Only a path on this site under /ui may follow sign-in (no open redirect)."""
    if not value or len(value) > 2000:
        return "/ui/leads"
    parts = urlsplit(value)
    if (
        parts.scheme
        or parts.netloc
        or not parts.path.startswith("/ui")
        or value.startswith("//")
        or "\\" in value
    ):
        return "/ui/leads"
    if parts.path.startswith("/ui/signin") or parts.path.startswith("/ui/static"):
        return "/ui/leads"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _to_signin(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect("/ui/signin?" + urlencode({"next": here}))


# --- sign-in ---------------------------------------------------------------------------------------------
def _signin_page(
    request: Request, next_url: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    token, new = session.signin_token(request)
    response = render(
        request, "signin.html", {"signin_csrf": token, "next": next_url, "error": error}, status
    )
    if new:
        session.set_signin_token(request, response, token)
    return response


@router.get("/signin")
def signin_form(request: Request, next: str | None = None):
    next_url = _safe_next(next)
    if session.current(request):
        return redirect(next_url)
    return _signin_page(request, next_url)


@router.post("/signin")
async def signin(request: Request):
    form = await request.form()
    next_url = _safe_next(form.get("next"))
    state, scope = request.app.state, request.scope
    wait = auth.retry_after(state, scope)
    if wait:  # too many wrong keys from this address: even the right one waits (as for the API)
        response = _signin_page(
            request,
            next_url,
            f"Too many wrong keys were tried from your network address. Try again in {wait} seconds.",
            429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if not session.valid_signin_token(request, form.get("csrf")):
        return _signin_page(
            request,
            next_url,
            "The sign-in form expired or did not come from this site. Please sign in again.",
            403,
        )
    key = str(form.get("key") or "").strip()
    role = session.check_key(request.app, key)
    if role is None:
        auth.failed(state, scope, "invalid key" if key else "no key", session.UI_ROLES, counted=bool(key))
        return _signin_page(
            request, next_url, "That key is not valid. Paste the sales key you were given.", 401
        )
    if role not in session.UI_ROLES:
        auth.failed(state, scope, f"a {role} key", session.UI_ROLES, counted=False)
        return _signin_page(
            request,
            next_url,
            f"This is a {role} key: it can score leads through the API but "
            "cannot open the sales page. Sign in with a sales or admin key.",
            403,
        )
    response = redirect(next_url)
    await run_in_threadpool(session.start, request.app, response, key)
    log.info("sales page: %s signed in", role)
    return response


@router.post("/signout")
async def signout(request: Request):
    sess = await run_in_threadpool(session.current, request)
    form = await request.form()
    if sess and not session.valid_csrf(sess, form.get("csrf")):
        return _forbidden(request, sess)
    response = redirect("/ui/signin")
    await run_in_threadpool(
        session.end, request, response
    )  # the session ends on the server, not only the cookie
    return response


def _forbidden(request: Request, sess: session.Session | None) -> HTMLResponse:
    return render(
        request,
        "message.html",
        {
            "title": "Form refused",
            "error": "This form did not come from this page or has expired (missing or wrong security token). "
            "Nothing was saved. Reload the page and try again.",
        },
        403,
        sess,
    )


# --- pages -----------------------------------------------------------------------------------------------
@router.get("")
@router.get("/")
def home(request: Request):
    return redirect("/ui/leads") if session.current(request) else _to_signin(request)


def _parse_filters(params) -> tuple[queries.ListFilter, int, dict, list[str]]:
    errors = []
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
    shown = {"grade": grade or "", "source": source or "", "since": since_text, "unreviewed": unreviewed}
    return queries.ListFilter(grade, source, since, unreviewed), page, shown, errors


def _query_string(shown: dict, **changes) -> str:
    q = {k: v for k, v in {**shown, **changes}.items() if v not in (None, "", False)}
    if q.get("unreviewed") is True:
        q["unreviewed"] = "1"
    return urlencode(q)


@router.get("/leads")
def lead_list(request: Request):
    sess = session.current(request)
    if not sess:
        return _to_signin(request)
    f, page, shown, errors = _parse_filters(request.query_params)
    engine = request.app.state.engine
    rows, total = queries.lead_list(engine, f, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    now = datetime.now(UTC)
    for r in rows:
        r["trend"] = trend(r["score"], r["previous_score"])
        r["top"] = strongest(r["reasons"])
        r["source"] = (r.get("attributes") or {}).get("source")
        r["age"] = age(r["created_at"], now)
    pages = max(1, -(-total // PAGE_SIZE))
    return render(
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
            "sources": queries.sources(engine),
            "filtered": any(shown.values()),
            "error": "; ".join(errors) or None,
        },
        422 if errors else 200,
        sess,
    )


def _lead_context(request: Request, lead_id: str) -> dict | None:
    engine = request.app.state.engine
    lead = queries.lead_row(engine, lead_id)
    history = store.score_history(engine, lead_id, limit=50)
    if lead is None and not history:
        return None
    latest = history[0] if history else None
    reasons = (latest or {}).get("reasons") or []
    model = request.app.state.holder.model
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


def _not_found(request: Request, sess, lead_id: str) -> HTMLResponse:
    return render(
        request,
        "message.html",
        {"title": "Lead not found", "nav": "leads", "error": f"There is no lead {lead_id!r}."},
        404,
        sess,
    )


@router.get("/leads/{lead_id}")
def lead_page(request: Request, lead_id: str):
    sess = session.current(request)
    if not sess:
        return _to_signin(request)
    ctx = _lead_context(request, lead_id) if LEAD_ID.match(lead_id) else None
    if ctx is None:
        return _not_found(request, sess, lead_id)
    saved = request.query_params.get("saved", "")
    if saved.isdigit() and len(saved) < 19:
        ctx["saved"] = queries.feedback_by_id(request.app.state.engine, int(saved), lead_id)
    return render(request, "lead.html", ctx, 200, sess)


@router.post("/leads/{lead_id}/feedback")
async def lead_feedback(request: Request, lead_id: str):
    sess = session.current(request)
    if not sess:
        return _to_signin(request)
    form = await request.form()
    if not session.valid_csrf(sess, form.get("csrf")):
        log.warning("sales page: feedback refused for a bad CSRF token")
        return _forbidden(request, sess)
    ctx = _lead_context(request, lead_id) if LEAD_ID.match(lead_id) else None
    if ctx is None:
        return _not_found(request, sess, lead_id)
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
        return render(request, "lead.html", {**ctx, "error": error}, 422, sess)
    try:
        fb = FeedbackIn(
            lead_id=lead_id, outcome=outcome, reason=reason, note=note, idempotency_key=f"ui:{form_key}"
        )
        row = save_feedback(request.app.state.engine, fb, source="ui")
    except ValidationError as e:
        error = "; ".join(
            f"{'.'.join(str(p) for p in x['loc']) or 'form'}: {x['msg']}" for x in e.errors()[:5]
        )
        return render(request, "lead.html", {**ctx, "error": error}, 422, sess)
    except HTTPException as e:
        detail = (
            e.detail
            if isinstance(e.detail, str)
            else "; ".join(f"{d['field']}: {d['reason']}" for d in e.detail)
        )
        return render(request, "lead.html", {**ctx, "error": detail}, e.status_code, sess)
    log.info(
        "sales page: feedback %s stored (id %s%s)",
        outcome,
        row["id"],
        ", a repeat" if row["duplicate"] else "",
    )
    return redirect(f"{lead_url(lead_id)}?saved={row['id']}#feedback")


@router.get("/summary")
def summary_page(request: Request):
    sess = session.current(request)
    if not sess:
        return _to_signin(request)
    days_text = request.query_params.get("days") or "90"
    error = None
    if not days_text.isdigit() or int(days_text) not in SUMMARY_DAYS:
        error = f"days: must be one of {', '.join(map(str, SUMMARY_DAYS))}"
        days_text = "90"
    s = queries.summary(request.app.state.engine, int(days_text))
    model = request.app.state.holder.model
    return render(
        request,
        "summary.html",
        {
            "nav": "summary",
            "s": s,
            "days": int(days_text),
            "choices": SUMMARY_DAYS,
            "error": error,
            "calibration": _calibration(request),
            "chart": charts.weekly_bars(s.weeks),
            "threshold": round(100 * model.policy.threshold) if model is not None else None,
        },
        422 if error else 200,
        sess,
    )


def _calibration(request: Request) -> dict | None:
    """The calibration check of the service's last monitoring report, for the summary's line, never waiting
    for one: {"status": "computing"} before the first report exists (it is computed in the background)."""
    report = request.app.state.monitor_cache.peek()
    if report is None:
        return {"status": "computing"} if request.app.state.holder.model is not None else None
    return {**report["checks"]["calibration"], "window_days": report["window_days"]}


def mount(app: FastAPI) -> None:
    """Serve the sales page under /ui on `app`."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
