"""API keys with roles. `scorer`: score, leads, events. `sales`: read leads, feedback. `admin`: all.

Keys are compared in constant time and never logged; 401 without a valid key, 403 for the wrong role.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from leadscore.settings import ROLES


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


def authorize(keys: dict[str, str], presented: str | None, allowed: tuple[str, ...]) -> str:
    """The role of the presented key, if it may do what `allowed` roles (or admin) may; else 401 / 403."""
    role = role_of(keys, presented) if presented else None
    if role is None:
        raise HTTPException(401, [{"field": "authorization",
                                   "reason": "missing or invalid API key: send 'Authorization: Bearer <key>'"}],
                            headers={"WWW-Authenticate": "Bearer"})
    if role != "admin" and role not in allowed:
        raise HTTPException(403, [{"field": "authorization", "reason": f"the {role} role may not do this; "
                                   f"needs one of: {', '.join((*allowed, 'admin'))}"}])
    return role


def require(*allowed: str):
    unknown = set(allowed) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    async def dependency(request: Request) -> str:  # async: no thread-pool hop
        headers = request.headers
        return authorize(request.app.state.keys, presented_key(headers.get("authorization"), headers.get("x-api-key")),
                         allowed)

    return dependency


Scorer = Annotated[str, Depends(require("scorer"))]
Sales = Annotated[str, Depends(require("sales"))]
Reader = Annotated[str, Depends(require("scorer", "sales"))]
Admin = Annotated[str, Depends(require("admin"))]
