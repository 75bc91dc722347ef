"""How a sales page is served: Jinja2 templates with autoescape on, security headers on every response,
redirects (sign-in and back, never off the site) and the shared error pages."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from leadscore.model.policy import GRADES
from leadscore.serve.ui import session
from leadscore.serve.ui.format import (
    OUTCOME_LABELS,
    REASON_LABELS,
    age,
    ago,
    event_label,
    fmt_day,
    fmt_time,
    lead_url,
    outcome_label,
    pct,
    signed,
)
from starlette.datastructures import FormData

HERE = Path(__file__).parent
R = TypeVar("R", bound=Response)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


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
        ago=ago,
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


def _secure(response: R) -> R:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    sess: session.Session | None = None,
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


def safe_next(value: str | None) -> str:
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


def to_signin(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect("/ui/signin?" + urlencode({"next": here}))


def forbidden(request: Request, sess: session.Session | None) -> HTMLResponse:
    return render(
        request,
        "message.html",
        {
            "title": "Form refused",
            "error": "This form did not come from this page or has expired (missing or wrong security "
            "token). "
            "Nothing was saved. Reload the page and try again.",
        },
        403,
        sess,
    )


def not_found(request: Request, sess: session.Session | None, lead_id: str) -> HTMLResponse:
    return render(
        request,
        "message.html",
        {"title": "Lead not found", "nav": "leads", "error": f"There is no lead {lead_id!r}."},
        404,
        sess,
    )


def form_text(form: FormData, name: str) -> str | None:
    """A form field's text; None when it is absent or a file (no form of the page uploads one)."""
    value = form.get(name)
    return value if isinstance(value, str) else None
