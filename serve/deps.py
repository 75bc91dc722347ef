"""Shared FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from starlette.datastructures import State


async def get_state(request: Request) -> State:
    return request.app.state


async def get_engine(request: Request) -> sa.Engine:
    return request.app.state.engine


AppState = Annotated[State, Depends(get_state)]
Engine = Annotated[sa.Engine, Depends(get_engine)]
