"""The summary page: how the leads were scored and judged over the last days, and the calibration line of
the service's last monitoring report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from leadscore.serve.deps import service_of
from leadscore.serve.ui import charts, responses, session, summary_numbers

router = APIRouter(prefix="/ui")
SUMMARY_DAYS = (30, 90, 365)


@router.get("/summary")
def summary_page(request: Request) -> Response:
    sess = session.current(request)
    if not sess:
        return responses.to_signin(request)
    days_text = request.query_params.get("days") or "90"
    error = None
    if not days_text.isdigit() or int(days_text) not in SUMMARY_DAYS:
        error = f"days: must be one of {', '.join(map(str, SUMMARY_DAYS))}"
        days_text = "90"
    s = summary_numbers.summary(service_of(request).engine, int(days_text))
    model = service_of(request).holder.model
    return responses.render(
        request,
        "summary.html",
        {
            "nav": "summary",
            "s": s,
            "days": int(days_text),
            "choices": SUMMARY_DAYS,
            "error": error,
            "calibration": _calibration(request),
            "chart": charts.weekly_bars(s.weeks),
            "threshold": round(100 * model.policy.threshold) if model is not None else None,
        },
        422 if error else 200,
        sess,
    )


def _calibration(request: Request) -> dict[str, Any] | None:
    """The calibration check of the service's last monitoring report, for the summary's line, never waiting
    for one: {"status": "computing"} before the first report exists (it is computed in the background)."""
    report = service_of(request).monitor_cache.peek()
    if report is None:
        return {"status": "computing"} if service_of(request).holder.model is not None else None
    return {**report["checks"]["calibration"], "window_days": report["window_days"]}
