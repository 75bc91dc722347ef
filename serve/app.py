"""The FastAPI application: API v1, health, metrics (and the sales page under /ui)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import mlflow
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from leadscore.serve import db
from leadscore.serve.admission import Admission
from leadscore.serve.auth import holds_a_key
from leadscore.serve.errors import INTERNAL_ERROR, error_detail, validation_detail
from leadscore.serve.metrics import BodyLimitMiddleware, Metrics, MetricsMiddleware
from leadscore.serve.model_holder import ModelHolder
from leadscore.serve.model_sync import ModelSync
from leadscore.serve.monitoring import MonitorCache
from leadscore.serve.routes import feedback, health, leads, model, monitoring, score
from leadscore.serve.scoring import Batcher
from leadscore.serve.store import ScoreLogWriter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from leadscore.settings import Settings, get_settings

log = logging.getLogger("leadscore.serve")


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
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


def _publish_request_schemas(app: FastAPI) -> None:
    """Put the schemas of bodies that routes validate themselves (POST /v1/score) into the OpenAPI
    components, where their `requestBody` refers to them."""
    generate = app.openapi

    def openapi() -> dict:
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, body in score.REQUEST_SCHEMAS.items():
            components.setdefault(name, body)
        return schema

    app.openapi = openapi


def _route_path(scope) -> str:
    """The path the app routes on: without the root_path a proxy mounts the service under (uvicorn
    --root-path puts it in front of the path)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class Leadscore(FastAPI):
    """The app, with POST /v1/score answered before the framework's middleware and routing
    (`routes.score.serve_score`): the one route where the framework's own cost would exceed the work.
    Every request passes this worker's `Admission` first (health and metrics always do)."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        path = _route_path(scope)
        state = self.state
        ticket = state["admission"].admit(scope, path, holds_a_key(state["keys"], scope))
        if ticket is None:  # over this worker's bound: 503 with Retry-After at once
            await self.state.admission.shed(scope, receive, send)
            return
        try:
            if scope["method"] == "POST" and path == score.PATH:
                scope["app"] = self
                await score.serve_score(scope, receive, send, self.state, self.state.settings.max_body_bytes)
                return
            await super().__call__(scope, receive, send)
        finally:
            self.state.admission.release(ticket)


def create_app(settings: Settings | None = None) -> Leadscore:
    settings = settings or get_settings()
    _setup_logging(settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        db.migrate(settings.database_url)
        app.state.engine = db.make_engine(settings.database_url)
        app.state.score_log = ScoreLogWriter(
            db.make_engine(settings.database_url, synchronous="NORMAL"),
            retention_days=settings.score_log_retention_days,
            max_bytes=settings.score_log_queue_bytes,
            on_drop=app.state.metrics.score_log_dropped.inc,
        )
        app.state.metrics.score_log_queued.set_function(lambda: app.state.score_log.queued_bytes)
        sync = app.state.model_sync = ModelSync(
            app.state.holder, app.state.engine, settings.reload_interval_seconds, settings.model_sync_seconds
        )
        await asyncio.to_thread(sync.start)
        outcome = await asyncio.to_thread(app.state.holder.reload)
        (log.info if app.state.holder.model is not None else log.warning)("model: %s", outcome.message)
        await asyncio.to_thread(sync.report_now)
        if (
            settings.exploration_share > 0
        ):  # the seed decides which leads are drawn: logged so a run can be redone
            log.info(
                "exploration: %.3g of the leads below the handoff threshold are handed over anyway "
                "(LEADSCORE_EXPLORATION_SHARE), drawn with seed %d (LEADSCORE_EXPLORATION_SEED)",
                settings.exploration_share,
                settings.exploration_seed,
            )
        else:
            log.info("exploration: off (LEADSCORE_EXPLORATION_SHARE=0; seed %d)", settings.exploration_seed)
        if not app.state.keys:
            log.warning("no API keys configured (LEADSCORE_API_KEYS): every endpoint but health answers 401")
        task = asyncio.create_task(sync.run()) if settings.model_sync_seconds > 0 else None
        try:
            yield
        finally:
            if task:
                task.cancel()
            with contextlib.suppress(Exception):  # the store may be gone: the report then just ages out
                sync.leave()
            app.state.score_log.close()
            app.state.score_log.engine.dispose()
            app.state.engine.dispose()

    app = Leadscore(
        title="Leadscore",
        version="1",
        lifespan=lifespan,
        redirect_slashes=False,  # a trailing-slash redirect is built from the Host header: 404 instead
        description="Scores leads with calibrated probabilities, grades and exact reasons; stores sales feedback.",
    )
    app.state.settings = settings
    app.state.keys = settings.keys()
    app.state.holder = ModelHolder(settings.model_uri)
    app.state.exploration = settings.exploration()
    app.state.metrics = Metrics()
    app.state.batcher = Batcher(app.state)
    app.state.admission = Admission(
        settings.max_inflight_requests,
        settings.max_inflight_body_bytes,
        settings.max_body_bytes,
        app.state.metrics,
    )
    app.state.model_sync = None
    app.state.monitor_cache = MonitorCache(app.state)
    app.state.score_log = None
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    for module in (health, score, feedback, model, leads, monitoring):
        app.include_router(module.router)
    with contextlib.suppress(ImportError):
        from leadscore.serve.ui import routes as ui_routes

        ui_routes.mount(app)
    _publish_request_schemas(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
