"""API keys with roles. `scorer`: score, leads, events. `sales`: read leads, feedback. `admin`: all.

Keys are compared in constant time and never logged; 401 without a valid key, 403 for the wrong role. Every
failed check is written to the audit log (method, path, client address, the role needed; never the key),
and a client address that presents wrong keys too often gets 429 for a while (`FailureLimiter`): the API
and the sales page's sign-in share one limiter per worker process (docs/security.md).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from leadscore.settings import ROLES

if TYPE_CHECKING:  # the service holds this module's FailureLimiter
    from leadscore.serve.service import ScoringService

audit = logging.getLogger("leadscore.serve.audit")


class FailureLimiter:
    """Failed key checks per client address in a sliding window, in this worker process's memory.

    An address is refused while its last `limit` failures all fall within `window` seconds. A request from an
    address with no recent failures costs one dict lookup: the scoring hot path pays nothing measurable, and
    no database call is made on any path (with W workers an address may fail up to W * limit times per
    window).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.max_clients, self.clock = limit, window, max_clients, clock
        self.failures: dict[str, deque[float]] = {}  # address -> times of its last `limit` failures

    def retry_after(self, client: str) -> int:
        """Whole seconds until `client` may present a key again; 0 when it may now."""
        times = self.failures.get(client)
        if times is None or len(times) < self.limit:
            return 0
        left = times[0] + self.window - self.clock()
        return math.ceil(left) if left > 0 else 0

    def fail(self, client: str) -> None:
        if self.limit <= 0:
            return
        times = self.failures.get(client)
        if times is None:
            if len(self.failures) >= self.max_clients:
                self._forget_old()
            times = self.failures[client] = deque(maxlen=self.limit)
        times.append(self.clock())

    def _forget_old(self) -> None:
        """Drop addresses without a failure in the window; if still full (a flood from many addresses), the
        oldest tenth: memory stays bounded whatever the number of addresses."""
        cutoff = self.clock() - self.window
        for client in [c for c, t in self.failures.items() if t[-1] < cutoff]:
            del self.failures[client]
        if len(self.failures) >= self.max_clients:
            # a flood from many addresses: forget those not locked out first, so the flood cannot push a
            # locked-out address out of the table (and so clear its lockout); then the oldest
            drop = max(1, self.max_clients // 10)
            unlocked = [c for c, t in self.failures.items() if len(t) < self.limit][:drop]
            for client in unlocked + list(self.failures)[: drop - len(unlocked)]:
                self.failures.pop(client, None)


def throttle_key(address: str) -> str:
    """What failures are counted against: an IPv4 address, or an IPv6 address's /64 (one host usually holds
    a whole /64, so counting single IPv6 addresses would give it 2**64 tries)."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    except ValueError:
        return address


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _printable(text: str, limit: int = 200) -> str:
    """A request-controlled string as one log-safe line (a path may hold decoded newlines)."""
    return repr(text[:limit])[1:-1]


def needs(allowed: tuple[str, ...]) -> str:
    """'the admin role' / 'the scorer or admin role': who may do what `allowed` roles (and admin) may."""
    roles = list(dict.fromkeys((*allowed, "admin")))
    return f"the {' or '.join(roles)} role"


def too_many(wait: int) -> HTTPException:
    return HTTPException(
        429,
        [
            {
                "field": "authorization",
                "reason": f"too many failed key checks from this address; try again in {wait} s",
            }
        ],
        headers={"Retry-After": str(wait)},
    )


def retry_after(service: ScoringService, scope: Scope) -> int:
    """Whole seconds until the request's address may present a key again (`FailureLimiter`); 0 = now."""
    return service.auth_failures.retry_after(throttle_key(client_address(scope)))


def failed(
    service: ScoringService, scope: Scope, reason: str, allowed: tuple[str, ...], counted: bool
) -> None:
    """Audit a failed check; count it against the address when it was a wrong key (a guess)."""
    client = client_address(scope)
    if counted:
        service.auth_failures.fail(throttle_key(client))
    audit.warning(
        "auth failure: %s %s from %s: %s; needs %s",
        scope.get("method", "-"),
        _printable(scope.get("path", "")),
        _printable(client),
        reason,
        needs(allowed),
    )


def role_of(keys: dict[str, str], presented: str) -> str | None:
    found = None
    for key, role in keys.items():  # compare with every key so timing does not reveal which matched
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = role
    return found


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key`."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return x_api_key or None


def holds_a_key(keys: dict[str, str], scope: Scope) -> bool:
    """Whether the request's headers present one of `keys` (any role): what admission budgets for."""
    authorization = x_api_key = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"x-api-key" and x_api_key is None:
            x_api_key = value.decode("latin-1")
    presented = presented_key(authorization, x_api_key)
    return presented is not None and role_of(keys, presented) is not None


def authorize(service: ScoringService, scope: Scope, presented: str | None, allowed: tuple[str, ...]) -> str:
    """The role of the presented key, if it may do what `allowed` roles (or admin) may; else 401 / 403, or
    429 for an address with too many recent wrong keys (checked first: a right key does not get through
    either)."""
    guard, address = service.auth_failures, throttle_key(client_address(scope))
    if address in guard.failures:  # the success path of a client without recent failures stops here
        wait = guard.retry_after(address)
        if wait:
            raise too_many(wait)
    role = role_of(service.keys, presented) if presented else None
    if role is None:
        failed(
            service, scope, "invalid API key" if presented else "no API key", allowed, counted=bool(presented)
        )
        raise HTTPException(
            401,
            [
                {
                    "field": "authorization",
                    "reason": "missing or invalid API key: send 'Authorization: Bearer <key>'",
                }
            ],
            headers={"WWW-Authenticate": "Bearer"},
        )
    if role != "admin" and role not in allowed:
        failed(service, scope, f"a {role} key", allowed, counted=False)
        raise HTTPException(
            403,
            [
                {
                    "field": "authorization",
                    "reason": f"this route needs {needs(allowed)}; your key has the {role} role",
                }
            ],
        )
    return role


# The two ways to send a key, as FastAPI security schemes: every route that requires a role declares them in
# the OpenAPI document (as alternatives), and /docs can send them. They only declare: `presented_key` reads
# the key, as it does for POST /v1/score's own argument reader (routes/score.ScoreRoute).
BEARER = HTTPBearer(scheme_name="bearer", auto_error=False, description="`Authorization: Bearer <key>`")
API_KEY = APIKeyHeader(
    name="X-API-Key", scheme_name="apiKey", auto_error=False, description="`X-API-Key: <key>`"
)


def require(*allowed: str) -> Callable[..., Coroutine[Any, Any, str]]:
    """The dependency that lets a request through with a key of one of the `allowed` roles (or admin)."""
    unknown = set(allowed) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    # async: no thread-pool hop
    async def dependency(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
        _key: Annotated[str | None, Security(API_KEY)],
    ) -> str:
        headers = request.headers
        return authorize(
            request.app.state.service,  # the one typed entry of the app's state (serve.deps.get_service)
            request.scope,
            presented_key(headers.get("authorization"), headers.get("x-api-key")),
            allowed,
        )

    return dependency


Scorer = Annotated[str, Depends(require("scorer"))]
Sales = Annotated[str, Depends(require("sales"))]
Reader = Annotated[str, Depends(require("scorer", "sales"))]
Admin = Annotated[str, Depends(require("admin"))]
