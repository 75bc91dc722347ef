"""Shared FastAPI dependencies: the worker's `ScoringService` and its store's engine."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from leadscore.serve.service import ScoringService


def service_of(request: Request) -> ScoringService:
    """The service the app was built with (`app.create_app` puts it in the app's state, its one entry)."""
    service: ScoringService = request.app.state.service
    return service


async def get_service(request: Request) -> ScoringService:  # async: no thread-pool hop
    return service_of(request)


async def get_engine(request: Request) -> sa.Engine:
    return service_of(request).engine


ServiceDep = Annotated[ScoringService, Depends(get_service)]
Engine = Annotated[sa.Engine, Depends(get_engine)]
