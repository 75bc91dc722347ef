"""POST /v1/score flags values outside the range the model learned from, over HTTP, and keeps them out of
the reasons; the score and its exact contributions are those of the same lead without the flag."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import pytest

pytestmark = pytest.mark.slow


def test_a_lead_older_than_any_training_lead_is_flagged_and_its_age_is_no_reason(server, trained):
    ranges = trained.result.model.info["ranges"]["lead_age_days"]
    with server.client("scorer") as c:
        example = c.get("/v1/model").json()["example"]["leads"][0]
        # given the model's example lead, as of a moment far beyond its creation (older than any fit row)
        created = datetime.fromisoformat(example["created_at"].replace("Z", "+00:00"))
        age = int(ranges["max"]) + 200
        old = copy.deepcopy(example) | {
            "lead_id": "oor-old",
            "as_of": (created + timedelta(days=age)).isoformat(),
        }
        # when it is scored with every contribution
        r = c.post("/v1/score?explain=full", json={"leads": [old]})
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]
    # then the age is flagged, in words and numbers
    assert res["out_of_range"][0] == {
        "feature": "lead_age_days",
        "label": "Lead age in days",
        "value": age,
        "trained_min": ranges["min"],
        "trained_max": ranges["max"],
        "message": f"Lead is {age} days old: older than any lead the model learned from "
        f"({ranges['min']:.0f} to {ranges['max']:.0f} days)",
    }
    # and it is not a reason, while its contribution still counts in the exact sum
    assert "lead_age_days" not in [x["feature"] for x in res["reasons"]]
    ex = res["explanation"]
    assert ex["contributions"]["lead_age_days"] != 0
    assert ex["base"] + sum(ex["contributions"].values()) == pytest.approx(ex["logit"], abs=1e-9)
    assert all(x["points"] != 0 for x in res["reasons"])


@pytest.mark.parametrize("age_days", [5, 0], ids=["five-days-old", "scored-as-it-arrives"])
def test_a_lead_within_the_ranges_has_an_empty_out_of_range_list(server, age_days):
    with server.client("scorer") as c:
        # given a lead without activity yet, five days old or scored the moment it arrives (training rows
        # start at day 1, but a brand-new lead is the first bin's case, not an extrapolation)
        example = c.get("/v1/model").json()["example"]["leads"][0]
        created = datetime.fromisoformat(example["created_at"].replace("Z", "+00:00"))
        young = example | {
            "lead_id": "oor-young",
            "events": [],
            "as_of": (created + timedelta(days=age_days)).isoformat(),
        }
        # when it is scored, then nothing is flagged, and it has reasons
        r = c.post("/v1/score", json={"leads": [young]})
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    assert res["out_of_range"] == [] and res["reasons"]
