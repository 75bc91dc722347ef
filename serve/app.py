"""The FastAPI application: API v1, health, metrics (and the sales page under /ui)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from leadscore.serve.admission import AdmissionMiddleware
from leadscore.serve.body_limit import BodyLimitMiddleware
from leadscore.serve.errors import INTERNAL_ERROR, error_detail, validation_detail
from leadscore.serve.metrics import MetricsMiddleware
from leadscore.serve.routes import (
    admin_webhooks,
    feedback,
    handoffs,
    health,
    leads,
    model,
    monitoring,
    score,
)
from leadscore.serve.service import ScoringService
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from leadscore.settings import Settings, get_settings

log = logging.getLogger("leadscore.serve")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for it
    return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # registered for it
    field = {400: "body", 404: "path", 405: "method"}.get(exc.status_code, "request")
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:  # Starlette's Allow names only the methods of the first route of the path
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return JSONResponse(
        {"detail": error_detail(exc.detail, field)}, status_code=exc.status_code, headers=headers
    )


def _allowed_methods(request: Request) -> str:
    """Every method the routes of the request's path answer."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):  # also those of included routers
        if route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client went away before its body was complete: nothing was done, nothing to log. The status is
    for the metrics only (the connection is gone): 499, as proxies name a request its client closed."""
    return Response(status_code=499)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The request path and the exception only: headers (which carry the API key) are never logged.
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)


def _setup_logging(level: str) -> None:
    """Our loggers at `level` with one handler, whatever logging the CLI or uvicorn set up before."""
    logger = logging.getLogger("leadscore")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    _setup_logging(settings.log_level)
    service = ScoringService.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = await service.start()
        try:
            yield
        finally:
            service.stop(task)

    app = FastAPI(
        title="Leadscore",
        version="1",
        lifespan=lifespan,
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
        },  # ours are Prometheus (serve/metrics.py)
        redirect_slashes=False,  # a trailing-slash redirect is built from the Host header: 404 instead
        description=(
            "Scores leads with calibrated probabilities, grades and exact reasons; stores sales feedback."
        ),
    )
    app.state.service = service  # its one entry: routes take it through `deps.ServiceDep`
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
    for module in (
        score,
        health,
        feedback,
        model,
        leads,
        monitoring,
        handoffs,
        admin_webhooks,
    ):  # the busiest route matched first
        app.include_router(module.router)
    with contextlib.suppress(ImportError):
        from leadscore.serve.ui import routes as ui_routes

        ui_routes.mount(app)
    # the last added runs first: every request is timed, then admitted or shed, then its body read (413
    # past the limit); 4xx and 5xx answers come from the exception handlers above
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(AdmissionMiddleware, admission=service.admission, keys=service.keys)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    return app
