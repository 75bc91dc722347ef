"""Signing in to and out of the sales page, with a sales or admin key (see `session`)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from leadscore.serve import auth
from leadscore.serve.deps import service_of
from leadscore.serve.ui import responses, session
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("leadscore.serve.ui")
router = APIRouter(prefix="/ui")


@router.get("")
@router.get("/")
def home(request: Request) -> Response:
    return responses.redirect("/ui/leads") if session.current(request) else responses.to_signin(request)


def _signin_page(
    request: Request, next_url: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    token, new = session.signin_token(request)
    response = responses.render(
        request, "signin.html", {"signin_csrf": token, "next": next_url, "error": error}, status
    )
    if new:
        session.set_signin_token(request, response, token)
    return response


@router.get("/signin")
def signin_form(request: Request, next: str | None = None) -> Response:
    next_url = responses.safe_next(next)
    if session.current(request):
        return responses.redirect(next_url)
    return _signin_page(request, next_url)


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await request.form()
    next_url = responses.safe_next(responses.form_text(form, "next"))
    service, scope = service_of(request), request.scope
    wait = auth.retry_after(service, scope)
    if wait:  # too many wrong keys from this address: even the right one waits (as for the API)
        response = _signin_page(
            request,
            next_url,
            f"Too many wrong keys were tried from your network address. Try again in {wait} seconds.",
            429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if not session.valid_signin_token(request, responses.form_text(form, "csrf")):
        return _signin_page(
            request,
            next_url,
            "The sign-in form expired or did not come from this site. Please sign in again.",
            403,
        )
    key = str(form.get("key") or "").strip()
    role = session.check_key(request.app, key)
    if role is None:
        auth.failed(service, scope, "invalid key" if key else "no key", session.UI_ROLES, counted=bool(key))
        return _signin_page(
            request, next_url, "That key is not valid. Paste the sales key you were given.", 401
        )
    if role not in session.UI_ROLES:
        auth.failed(service, scope, f"a {role} key", session.UI_ROLES, counted=False)
        return _signin_page(
            request,
            next_url,
            f"This is a {role} key: it can score leads through the API but "
            "cannot open the sales page. Sign in with a sales or admin key.",
            403,
        )
    signed_in = responses.redirect(next_url)
    await run_in_threadpool(session.start, request.app, signed_in, key)
    log.info("sales page: %s signed in", role)
    return signed_in


@router.post("/signout")
async def signout(request: Request) -> Response:
    sess = await run_in_threadpool(session.current, request)
    form = await request.form()
    if sess and not session.valid_csrf(sess, responses.form_text(form, "csrf")):
        return responses.forbidden(request, sess)
    response = responses.redirect("/ui/signin")
    await run_in_threadpool(
        session.end, request, response
    )  # the session ends on the server, not only the cookie
    return response
