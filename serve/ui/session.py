"""The sales page's session: a signed cookie naming the API key it was opened with, and its CSRF token.

The cookie holds no key: it holds an HMAC fingerprint of the key (keyed with the session secret), the role,
a per-session CSRF token and the sign-in time, signed and timestamped with itsdangerous. Every request
looks the fingerprint up among the keys configured *now*, so removing a key from LEADSCORE_API_KEYS (or
turning it into a scorer key) ends its sessions at once. The cookie is http-only, SameSite=Lax, scoped to
/ui and `Secure` when `secure_cookies` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from leadscore.serve.auth import role_of
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "leadscore_session"
SIGNIN_COOKIE = "leadscore_signin"  # holds the sign-in form's CSRF token before there is a session
MAX_AGE = 12 * 3600  # a working day; then sign in again
SIGNIN_MAX_AGE = 3600
PATH = "/ui"
UI_ROLES = ("sales", "admin")


@dataclass(frozen=True)
class Session:
    role: str
    csrf: str


def secret(app) -> bytes:
    """settings.session_secret, or one derived from the configured keys (stable across restarts and workers,
    and changed whenever the keys change, which also ends every session)."""
    configured = app.state.settings.session_secret.get_secret_value()
    if configured:
        return configured.encode()
    material = "\0".join(sorted(f"{role}:{key}" for key, role in app.state.keys.items()))
    return hashlib.sha256(b"leadscore-ui-session\0" + material.encode()).digest()


def _serializer(app, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret(app), salt=salt)


def fingerprint(app, key: str) -> str:
    return hmac.new(secret(app), key.encode(), hashlib.sha256).hexdigest()[:32]


def check_key(app, presented: str) -> str | None:
    """The role of a presented key (constant-time), or None."""
    if not presented or len(presented) > 512:
        return None
    return role_of(app.state.keys, presented)


def start(app, response: Response, key: str, role: str) -> None:
    payload = {"fp": fingerprint(app, key), "role": role, "csrf": secrets.token_urlsafe(32)}
    _set(app, response, COOKIE, _serializer(app, "session").dumps(payload), MAX_AGE)
    response.delete_cookie(SIGNIN_COOKIE, path=PATH)


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH)


def current(request: Request) -> Session | None:
    """The valid session of this request, or None (absent, forged, expired, or its key is gone)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    app = request.app
    try:
        payload = _serializer(app, "session").loads(raw, max_age=MAX_AGE)
    except BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("fp"), str) or not payload.get("csrf"):
        return None
    role = None
    for key, key_role in app.state.keys.items():  # look at every key: timing does not tell which matched
        if hmac.compare_digest(fingerprint(app, key), payload["fp"]):
            role = key_role
    if role not in UI_ROLES:
        return None
    return Session(role=role, csrf=str(payload["csrf"]))


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
    _set(request.app, response, SIGNIN_COOKIE, _serializer(request.app, "signin").dumps(token), SIGNIN_MAX_AGE)


def valid_signin_token(request: Request, submitted: str | None) -> bool:
    token, new = signin_token(request)
    return not new and bool(submitted) and hmac.compare_digest(token.encode(), str(submitted).encode())


def valid_csrf(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf.encode(), str(submitted).encode())


def _set(app, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PATH, httponly=True,
                        secure=bool(app.state.settings.secure_cookies), samesite="lax")
