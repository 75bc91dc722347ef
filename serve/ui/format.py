"""What the sales page shows and how: the labels of outcomes, reasons and events, and the formatting of
times, ages, trends and reasons (Jinja2 filters, see `responses`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
from leadscore.features import schema as S
from leadscore.model.reasons import notable
from leadscore.serve.routes.leads import TREND_POINTS

if TYPE_CHECKING:
    from leadscore.model.scoring import ScoringModel

OUTCOME_LABELS = {"qualified": "Qualified", "disqualified": "Not qualified", "won": "Won", "lost": "Lost"}
REASON_LABELS = {
    "bad_fit": "Bad fit",
    "no_budget": "No budget",
    "student": "Student",
    "competitor": "Competitor",
    "spam": "Spam",
    "no_response": "No response",
    "other": "Other",
}
assert set(REASON_LABELS) == set(S.DISQUALIFY_REASONS), "a disqualify reason has no label on the sales page"
EVENT_LABELS = {
    "email_sent": "Marketing email sent",
    "email_opened": "Opened an email",
    "email_clicked": "Clicked an email",
    "web_visit": "Visited the website",
    "content_download": "Downloaded content",
    "webinar_registered": "Registered for a webinar",
    "webinar_attended": "Attended a webinar",
    "form_submitted": "Submitted a form",
    "demo_requested": "Requested a demo",
    "unsubscribed": "Unsubscribed",
    "sales_call": "Sales call",
    "meeting": "Meeting",
    "handed_to_sales": "Handed to sales",
}


# --- formatting --------------------------------------------------------------------------------------------
def fmt_time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "–"


def fmt_day(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%d %b %Y") if t else "–"


def age(t: datetime | None, now: datetime | None = None) -> str:
    if t is None:
        return "–"
    seconds = ((now or datetime.now(UTC)) - t).total_seconds()
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    days = seconds / 86400
    if days < 60:
        return f"{int(days)} d"
    if days < 730:
        return f"{int(days // 30.4)} mo"
    return f"{int(days // 365.25)} y"


def ago(t: datetime | None, now: datetime | None = None) -> str:
    """How long ago `t` was, in words ("just now", "2 h ago")."""
    if t is None:
        return "–"
    if ((now or datetime.now(UTC)) - t).total_seconds() < 60:
        return "just now"
    return f"{age(t, now)} ago"


def signed(n: int) -> str:
    return f"+{n}" if n > 0 else f"−{-n}" if n < 0 else "0"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def trend(score: int, previous: int | None) -> tuple[str, str, str]:
    """(arrow, css class, words) from the last two scores, with the API's threshold for a move."""
    if previous is None:
        return "•", "new", "first score"
    delta = score - previous
    if delta > TREND_POINTS:
        return "▲", "up", f"up {delta} since the last score"
    if delta < -TREND_POINTS:
        return "▼", "down", f"down {-delta} since the last score"
    return "▶", "flat", "steady since the last score"


def strongest(reasons: list[dict[str, Any]] | None, n: int = 2) -> list[dict[str, Any]]:
    return sorted((r for r in reasons or [] if notable(r)), key=lambda r: -abs(r.get("impact") or 0))[:n]


def out_of_range(model: ScoringModel | None, latest: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The shown score's values outside the range its model learned from (`ScoringModel.out_of_range`), from
    the features the score log kept; none when the model serving now is not the one that scored."""
    if model is None or latest is None or latest.get("model_version") != model.version:
        return []
    features = latest.get("features") or {}
    if not all(name in features for name in model.encoder.features):
        return []
    return model.out_of_range(
        {
            name: np.array(
                [
                    features[name]
                    if features[name] is not None
                    else (None if name in model.encoder.vocab else float("nan"))
                ],
                dtype=object,
            )
            for name in model.encoder.features
        }
    )[0]


def outcome_label(fb: dict[str, Any] | None) -> str:
    if not fb:
        return ""
    text: str = OUTCOME_LABELS.get(fb["outcome"], fb["outcome"])
    if fb.get("reason"):
        text += f" ({REASON_LABELS.get(fb['reason'], fb['reason']).lower()})"
    return text


def event_label(e: dict[str, Any]) -> str:
    text = EVENT_LABELS.get(e["type"], e["type"])
    return f"{text} ({e['page']})" if e.get("page") else text


def lead_url(lead_id: str) -> str:
    return f"/ui/leads/{quote(lead_id, safe='')}"
