"""The serving hot path gives exactly the numbers of the reference path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.features.frames import feature_frame
from leadscore.features.live import lead_features, to_ms
from leadscore.model.calibration import sigmoid
from support import api_lead


def test_compiled_explain_equals_the_reference_path_bit_for_bit(trained, demo_dataset):
    # given features of 300 leads at various moments (with missing values and unseen categories)
    model = trained.result.model
    sample = demo_dataset.leads.sample(300, random_state=3)
    as_of = (sample[S.CREATED_AT] + pd.to_timedelta(np.arange(300) % 90 + 1, unit="D")).astype(
        "datetime64[ms, UTC]"
    )
    rows = pd.DataFrame({S.LEAD_ID: sample[S.LEAD_ID].to_numpy(), "as_of": as_of.to_numpy()})
    table = feature_frame(demo_dataset, rows)
    values = {c: table[c].to_numpy() for c in table.columns}
    values["country"] = values["country"].copy()
    values["country"][:5] = "Atlantis"
    # when they are explained by the reference building blocks (Encoder.transform, Scorecard.contributions,
    # Platt) and by `explain` (compiled lookups and a compiled points lookup)
    X = model.encoder.transform(values)
    base_raw, C_raw = model.raw(X)
    a, b = model.calibration.a, model.calibration.b
    ref_C, ref_base = a * C_raw, a * base_raw + b
    ref_logit = ref_base + ref_C.sum(axis=1)
    for n in (1, 20, 300):
        fast = model.explain({k: v[:n] for k, v in values.items()})
        # then every number is identical
        np.testing.assert_array_equal(fast.X, X[:n])
        np.testing.assert_array_equal(fast.contributions, ref_C[:n])
        np.testing.assert_array_equal(fast.logit, ref_logit[:n])
        assert fast.base == ref_base
    # and results() agrees with the reference probabilities
    results = model.results(values, list(rows[S.LEAD_ID]), explain_full=True)
    assert [r["probability"] for r in results] == sigmoid(ref_logit).tolist()


@pytest.mark.parametrize("family", ["scorecard", "boosted"])
def test_leads_scored_together_get_exactly_what_each_gets_alone(family, trained, boosted_model, demo_dataset):
    # given 40 leads as a request carries them (attributes, all their events, some at unseen values), each at
    # its own moment, and a model of each family
    model = trained.result.model if family == "scorecard" else boosted_model
    leads_table = demo_dataset.leads.sample(40, random_state=11)
    leads = [api_lead(demo_dataset, lead_id) for lead_id in leads_table[S.LEAD_ID]]
    for lead in leads[::7]:
        lead["attributes"]["country"] = "Atlantis"
    moments = [
        to_ms(created.to_pydatetime()) + (i % 60 + 1) * 86_400_000
        for i, created in enumerate(leads_table[S.CREATED_AT])
    ]
    ids = [lead["lead_id"] for lead in leads]
    assert sum(len(lead["events"]) for lead in leads) > 40
    alone = {
        full: [
            model.results(lead_features([lead], [t]), [lead["lead_id"]], explain_full=full)[0]
            for lead, t in zip(leads, moments, strict=False)
        ]
        for full in (False, True)
    }
    for n, full in (
        (4, False),
        (4, True),
        (40, False),
        (40, True),
    ):  # a few leads, and many (other code paths)
        # when they are scored together (as the service's batches do) and one at a time
        together = model.results(lead_features(leads[:n], moments[:n]), ids[:n], explain_full=full)
        # then every number, reason and sentence is the same
        assert together == alone[full][:n]
    assert len({r["grade"] for r in alone[False]}) > 1 and all(r["reasons"] for r in alone[False])


def test_the_score_route_checks_the_key_then_the_query_then_the_body(trained, tmp_path):
    # given the app (POST /v1/score reads its own arguments: `routes.score.ScoreRoute`)
    from fastapi.testclient import TestClient
    from leadscore.serve.app import create_app

    from leadscore.settings import Settings

    settings = Settings(
        api_keys="scorer:sc_doors_0001,sales:sa_doors_0001",
        mlflow_tracking_uri=trained.uri,
        database_url=f"sqlite:///{tmp_path / 'doors.db'}",
        reload_interval_seconds=0,
    )
    example = trained.result.model.info["example"]
    cases = [
        ({"Authorization": "Bearer sc_doors_0001"}, "", example),
        ({"Authorization": "Bearer sc_doors_0001"}, "?explain=full", example),
        ({"Authorization": "Bearer sc_doors_0001"}, "?explain=most", example),
        ({"Authorization": "Bearer sa_doors_0001"}, "", example),
        ({}, "", example),
        ({"Authorization": "Bearer sc_doors_0001"}, "", {"leads": [{"lead_id": "a b"}]}),
        ({"Authorization": "Bearer sc_doors_0001"}, "", {"leads": [{"lead_id": "not-stored"}]}),
        ({}, "?explain=most", example),  # the key is checked before the query
        ({"Authorization": "Bearer sa_doors_0001"}, "?explain=most", example),
        ([("Authorization", "Bearer sc_doors_0001"), ("Authorization", "Bearer wrong")], "", example),
    ]
    # when each request is sent
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post(f"/v1/score{query}", json=body, headers=headers) for headers, query, body in cases
        ]
    # then the key is checked first (401, 403), then the query and the body (422), then the store (404); the
    # first of a repeated header counts; errors name the field
    assert [r.status_code for r in answers] == [200, 200, 422, 403, 401, 422, 404, 401, 403, 200]
    fields = [[d["field"] for d in r.json()["detail"]] for r in answers if r.status_code != 200]
    assert fields == [
        ["explain"],
        ["authorization"],
        ["authorization"],
        ["leads.0.lead_id"],
        ["leads.0.lead_id"],
        ["authorization"],
        ["authorization"],
    ]
    assert (
        answers[1].json()["results"][0]["explanation"]
        and "explanation" not in answers[0].json()["results"][0]
    )
