"""Prometheus metrics: requests and latency by route and status, the score distribution, model version, load
shedding, the score-log queue and webhook delivery."""

from __future__ import annotations

import time
from typing import Any

from leadscore.serve.admission import SHED
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "leadscore_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "leadscore_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.scores = Histogram(
            "leadscore_score",
            "Scores served (0-100)",
            buckets=tuple(range(10, 101, 10)),
            registry=self.registry,
        )
        self.grades = Counter("leadscore_grade_total", "Grades served", ["grade"], registry=self.registry)
        self.model_version = Gauge(
            "leadscore_model_version", "Version of the model being served", registry=self.registry
        )
        self.batches = Histogram(
            "leadscore_score_batch_requests",
            "Requests scored together (one event-loop step)",
            buckets=(1, 2, 3, 4, 6, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.shed = Counter(
            "leadscore_shed_requests_total",
            "Requests answered 503 at once: the worker was at its "
            "bound of requests or request bytes in flight",
            ["reason"],
            registry=self.registry,
        )
        self.inflight_requests = Gauge(
            "leadscore_inflight_requests", "Requests this worker is working on", registry=self.registry
        )
        self.inflight_bytes = Gauge(
            "leadscore_inflight_body_bytes",
            "Declared body bytes of the requests in flight",
            registry=self.registry,
        )
        self.score_log_dropped = Counter(
            "leadscore_score_log_dropped_rows_total",
            "Score-log rows dropped because the queue to the database was full",
            registry=self.registry,
        )
        self.score_log_queued = Gauge(
            "leadscore_score_log_queued_bytes",
            "Score-log bytes waiting for the database",
            registry=self.registry,
        )
        # webhooks (serve.webhooks): this worker's tries; the pending gauge is the store's, for every worker
        self.webhook_delivered = Counter(
            "leadscore_webhook_delivered_total", "Handoff events delivered (2xx)", registry=self.registry
        )
        self.webhook_failed = Counter(
            "leadscore_webhook_failed_total",
            "Failed webhook tries (errors, timeouts, non-2xx), retried or dead",
            registry=self.registry,
        )
        self.webhook_dead = Counter(
            "leadscore_webhook_dead_total",
            "Handoff events given up on (max attempts or max age)",
            registry=self.registry,
        )
        self.webhook_pending = Gauge(
            "leadscore_webhook_pending_events",
            "Handoff events waiting for delivery (read from the store at most every 10 s)",
            registry=self.registry,
        )
        # monitoring (serve.monitoring): set from the cached report when /metrics is read
        self.monitor_status = Gauge(
            "leadscore_monitor_status",
            "Monitoring status per check: 0 ok, 1 warn, 2 alert, -1 not enough data or unknown",
            ["check"],
            registry=self.registry,
        )
        self.monitor_retrain = Gauge(
            "leadscore_monitor_retrain_recommended", "1 when a monitoring alert fired", registry=self.registry
        )
        self.monitor_calibration = Gauge(
            "leadscore_monitor_calibration",
            "Calibration on the leads whose outcome is known: ece, predicted_rate, observed_rate, rows",
            ["figure"],
            registry=self.registry,
        )
        self.monitor_feature_psi = Gauge(
            "leadscore_monitor_feature_psi",
            "PSI of a model feature against training",
            ["feature"],
            registry=self.registry,
        )
        self.monitor_psi = Gauge(
            "leadscore_monitor_psi",
            "PSI of the score and of the grade mix against training",
            ["of"],
            registry=self.registry,
        )
        self.monitor_scores = Gauge(
            "leadscore_monitor_window_scores", "Scores in the monitoring window", registry=self.registry
        )
        self.monitor_coverage = Gauge(
            "leadscore_monitor_feedback_coverage",
            "Share of leads scored in the window that got a verdict",
            registry=self.registry,
        )
        self._children: dict[
            Any, Any
        ] = {}  # label values -> their series (request counter and latency, grade counter)

    def observe_scores(self, results: list[dict[str, Any]]) -> None:
        for r in results:
            self.scores.observe(r["score"])
            grade = self._children.get(r["grade"])
            if grade is None:
                grade = self._children[r["grade"]] = self.grades.labels(r["grade"])
            grade.inc()

    def observe_monitoring(self, report: dict[str, Any]) -> None:
        """The gauges of a monitoring report (`serve.monitoring.monitor`); figures it lacks are left out: the
        labelled series of the previous report are dropped first (a former champion's features, a figure the
        new report has not got), and the coverage share is NaN when it has none."""
        level = {"ok": 0, "warn": 1, "alert": 2}
        checks = report["checks"]
        for gauge in (
            self.monitor_status,
            self.monitor_calibration,
            self.monitor_feature_psi,
            self.monitor_psi,
        ):
            gauge.clear()
        for name, check in checks.items():
            self.monitor_status.labels(name).set(level.get(check["status"], -1))
        self.monitor_retrain.set(1 if report["retrain_recommended"] else 0)
        cal = checks["calibration"]
        for figure, key in (
            ("ece", "ece"),
            ("predicted_rate", "predicted_rate"),
            ("observed_rate", "observed_rate"),
            ("rows", "n"),
        ):
            if cal.get(key) is not None:
                self.monitor_calibration.labels(figure).set(cal[key])
        for name, entry in (checks["drift"].get("features") or {}).items():
            self.monitor_feature_psi.labels(name).set(entry["psi"])
        for of in ("score", "grades"):
            if checks[of].get("psi") is not None:
                self.monitor_psi.labels(of).set(checks[of]["psi"])
        self.monitor_scores.set(checks["volume"]["n"])
        share = checks["coverage"].get("share")
        self.monitor_coverage.set(float("nan") if share is None else share)

    def observe_batch(self, requests: int) -> None:
        self.batches.observe(requests)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds its key each time: look each series up once
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware) timing every request by its route template
    (`shed`: answered 503 by admission; `unmatched`: no route)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("shed" if SHED in scope else "unmatched")
            self.metrics.observe_request(path, scope["method"], status["code"], time.perf_counter() - start)
