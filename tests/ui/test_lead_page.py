"""The lead page tells one consistent story: reasons that move the score, the activity the score counted
apart from what came after it, and values the model never learned from. Real server, real browser."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from .conftest import HOSTILE_ID, sign_in

pytestmark = pytest.mark.slow


def _utc(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _shown(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _latest(ui, lead_id: str) -> tuple[datetime, int, dict]:
    # the features are stored as values, their names once per feature set (serve/db.py)
    as_of, score, values, names = ui.sql(
        "SELECT s.as_of, s.score, s.features, f.names "
        "FROM score_log s JOIN feature_sets f ON f.id = s.feature_set "
        "WHERE s.lead_id = ? ORDER BY s.scored_at DESC, s.id DESC LIMIT 1",
        lead_id,
    )[0]
    return _utc(as_of), score, dict(zip(json.loads(names), json.loads(values), strict=False))


def test_activity_separates_what_the_score_counted_from_what_came_after(ui, page):
    # given a lead scored as of a moment with events stored both before and after it
    def split(lid):
        as_of = _latest(ui, lid)[0]
        times = [
            _utc(t)
            for (t,) in ui.sql(
                "SELECT timestamp FROM events WHERE lead_id = ? ORDER BY timestamp DESC, id DESC", lid
            )
        ]
        return as_of, [t for t in times if t >= as_of], [t for t in times if t < as_of]

    lead_id = next(lid for lid in ui.lead_ids if len(split(lid)[1]) > 5 and len(split(lid)[2]) > 1)
    as_of, after, before = split(lead_id)
    _, score, _ = _latest(ui, lead_id)
    sign_in(page, ui.url)
    # when its page is opened
    page.goto(f"{ui.url}/ui/leads/{lead_id}")
    section = page.locator("section.o-events")
    # then the newest events after the score are marked as such, and the page says how many there are
    marked = section.locator("li.after")
    assert marked.count() == 5
    assert all("after this score" in t for t in marked.all_inner_texts())
    assert section.locator("li.after .when").all_inner_texts() == [_shown(t) for t in after[:5]]
    assert f"The newest 5 of {len(after)} events after this score" in section.inner_text()
    # and the moment the score was computed for sits in the lead's own timeline, below them
    mark = section.locator("#score-mark").inner_text()
    assert (
        _shown(as_of) in mark
        and f"Score {score} computed" in mark
        and f"not seen the {len(after)} events" in mark
    )
    # and below it, the events the score counted: the newest (up to 15) before that moment, none marked
    seen = section.locator("li:not(.after) .when").all_inner_texts()
    assert seen == [_shown(t) for t in before[:15]]
    assert (f"The newest 15 of {len(before)} events the score counted" in section.inner_text()) == (
        len(before) > 15
    )
    text = section.inner_text()
    assert (
        text.rindex("after this score")
        < text.index(f"Score {score} computed")
        < text.index(seen[0], text.index(f"Score {score} computed"))
    )
    # and the score line says the same moment
    assert f"Computed for {_shown(as_of)}" in page.locator("main").inner_text()


def test_every_listed_reason_moves_the_score_by_a_point(ui, page):
    # given scored leads
    sign_in(page, ui.url)
    for lead_id in ui.lead_ids[:12]:
        # when a lead page is opened
        page.goto(f"{ui.url}/ui/leads/{lead_id}")
        # then no reason reads 0 points, and a side without reasons says so
        points = page.locator("ul.reasons .pts").all_inner_texts()
        assert points and "0" not in points, (lead_id, points)
        for side, words in ((".pos-h", "raises"), (".neg-h", "lowers")):
            column = page.locator(f"div:has(> h3{side})")
            assert column.locator("li").count() > 0 or (
                column.inner_text().endswith(f"Nothing notable {words} this score.")
            ), lead_id


def test_a_value_older_than_any_training_lead_is_flagged_not_a_reason(ui, page, trained):
    # given a lead scored now, created long before every demo lead, so older than any lead the model saw
    _, _, features = _latest(ui, HOSTILE_ID)
    age = int(features["lead_age_days"])
    high = trained.result.model.info["ranges"]["lead_age_days"]["max"]
    assert age > high
    sign_in(page, ui.url)
    # when its page is opened
    page.goto(f"{ui.url}/ui/leads/{HOSTILE_ID}")
    # then the page says its age lies beyond what the model learned from, and the age is not a reason
    beyond = page.locator("#beyond").inner_text()
    assert f"Lead is {age} days old: older than any lead the model learned from" in beyond
    assert f"to {high:.0f} days" in beyond
    reasons = page.locator("ul.reasons li").all_inner_texts()
    assert not [r for r in reasons if re.search(r"Lead is \d+ days? old", r)]
    # and a lead whose every value lies within the ranges shows no such note
    ranges = trained.result.model.info["ranges"]
    inside = next(
        lid
        for lid in ui.lead_ids
        if all(
            v is None or ranges[k]["min"] <= v <= ranges[k]["max"]
            for k, v in _latest(ui, lid)[2].items()
            if k in ranges
        )
    )
    page.goto(f"{ui.url}/ui/leads/{inside}")
    assert page.locator("#beyond").count() == 0 and page.locator("ul.reasons li").count() > 0
