"""The sales page's session: a row in the service's store (`db.ui_sessions`, shared by every worker) named
by a random token that a signed cookie carries.

The cookie holds only the token, signed and timestamped with itsdangerous (a forged or stale cookie is turned
away without a database read). The row holds the token's sha256 (a copy of the table opens no session), an
HMAC fingerprint of the key signed in with (keyed with the session secret; never the key), the session's CSRF
token and its expiry. A session ends when:
- its user signs out (the row is deleted: the cookie captured before is worth nothing after),
- it expires (`session_max_age_seconds` after sign-in, whatever the cookie says),
- its key is no longer in LEADSCORE_API_KEYS, or is no longer a sales or admin key: every request looks the
  fingerprint up among the keys configured *now*.
The cookie is http-only, SameSite=Lax, scoped to /ui and `Secure` when `secure_cookies` is set. Every
function here that reads or writes the store is synchronous: call it from a worker thread.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer
from leadscore.serve import store
from leadscore.serve.auth import role_of
from leadscore.serve.db import ui_sessions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "leadscore_session"
SIGNIN_COOKIE = "leadscore_signin"  # holds the sign-in form's CSRF token before there is a session
SIGNIN_MAX_AGE = 3600
PATH = "/ui"
UI_ROLES = ("sales", "admin")


@dataclass(frozen=True)
class Session:
    role: str
    csrf: str


def secret(app: Starlette) -> bytes:
    """settings.session_secret, or one derived from the configured keys (stable across restarts and workers,
    and changed whenever the keys change, which also ends every session)."""
    configured: str = app.state.service.settings.session_secret.get_secret_value()
    if configured:
        return configured.encode()
    material = "\0".join(sorted(f"{role}:{key}" for key, role in app.state.service.keys.items()))
    return hashlib.sha256(b"leadscore-ui-session\0" + material.encode()).digest()


def _serializer(app: Starlette, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret(app), salt=salt)


def fingerprint(app: Starlette, key: str) -> str:
    return hmac.new(secret(app), key.encode(), hashlib.sha256).hexdigest()[:32]


def _row_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _max_age(app: Starlette) -> int:
    max_age: int = app.state.service.settings.session_max_age_seconds
    return max_age


def check_key(app: Starlette, presented: str) -> str | None:
    """The role of a presented key (constant-time), or None."""
    if not presented or len(presented) > 512:
        return None
    return role_of(app.state.service.keys, presented)


def start(app: Starlette, response: Response, key: str) -> None:
    """Open a session for `key` (already checked) and set its cookie; expired sessions are cleared out."""
    token, now = secrets.token_urlsafe(32), datetime.now(UTC)
    with app.state.service.engine.begin() as conn:
        conn.execute(ui_sessions.delete().where(ui_sessions.c.expires_at < now))
        conn.execute(
            ui_sessions.insert().values(
                id=_row_id(token),
                key_fp=fingerprint(app, key),
                csrf=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + timedelta(seconds=_max_age(app)),
            )
        )
    _set(app, response, COOKIE, _serializer(app, "session").dumps(token), _max_age(app))
    response.delete_cookie(SIGNIN_COOKIE, path=PATH)


def end(request: Request, response: Response) -> None:
    """End this request's session, if any (its row is deleted), and delete the cookie."""
    token = _token(request)
    if token:
        with request.app.state.service.engine.begin() as conn:
            conn.execute(ui_sessions.delete().where(ui_sessions.c.id == _row_id(token)))
    response.delete_cookie(COOKIE, path=PATH)


def _token(request: Request) -> str | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        token = _serializer(request.app, "session").loads(raw, max_age=_max_age(request.app))
    except BadSignature:  # includes SignatureExpired
        return None
    return token if isinstance(token, str) and token else None


def current(request: Request) -> Session | None:
    """The live session of this request, or None (absent, forged, signed out, expired, or its key is gone)."""
    token = _token(request)
    if token is None:
        return None
    app = request.app
    with app.state.service.engine.connect() as conn:
        row = conn.execute(
            sa.select(ui_sessions.c.key_fp, ui_sessions.c.csrf, ui_sessions.c.expires_at).where(
                ui_sessions.c.id == _row_id(token)
            )
        ).first()
    if row is None or store.aware(row.expires_at) <= datetime.now(UTC):
        return None
    role = None
    for (
        key,
        key_role,
    ) in app.state.service.keys.items():  # look at every key: timing does not tell which matched
        if hmac.compare_digest(fingerprint(app, key), row.key_fp):
            role = key_role
    if role not in UI_ROLES:
        return None
    return Session(role=role, csrf=row.csrf)


def signin_token(request: Request) -> tuple[str, bool]:
    """The sign-in form's CSRF token from its cookie, or a new one; (token, new)."""
    raw = request.cookies.get(SIGNIN_COOKIE)
    if raw:
        try:
            token = _serializer(request.app, "signin").loads(raw, max_age=SIGNIN_MAX_AGE)
            if isinstance(token, str) and token:
                return token, False
        except BadSignature:
            pass
    return secrets.token_urlsafe(32), True


def set_signin_token(request: Request, response: Response, token: str) -> None:
    _set(
        request.app, response, SIGNIN_COOKIE, _serializer(request.app, "signin").dumps(token), SIGNIN_MAX_AGE
    )


def valid_signin_token(request: Request, submitted: str | None) -> bool:
    token, new = signin_token(request)
    return not new and bool(submitted) and hmac.compare_digest(token.encode(), str(submitted).encode())


def valid_csrf(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf.encode(), str(submitted).encode())


def _set(app: Starlette, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        secure=bool(app.state.service.settings.secure_cookies),
        samesite="lax",
    )
