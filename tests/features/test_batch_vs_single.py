"""The batch path (training, batch scoring) and the live path (one lead in a request) give equal features."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leadscore.features import schema as S
from leadscore.features.frames import feature_frame
from leadscore.features.live import lead_features, to_ms


def _live_lead(dataset, lead_id: str, iso_events: bool) -> dict:
    lead = dataset.leads.set_index(S.LEAD_ID).loc[lead_id]
    ev = dataset.events[dataset.events[S.LEAD_ID] == lead_id]
    fmt = (lambda t: t.isoformat()) if iso_events else (lambda t: t.to_pydatetime())
    return {
        "lead_id": lead_id,
        "created_at": lead[S.CREATED_AT].to_pydatetime(),
        "attributes": {a: lead[a] for a in S.LEAD_ATTRIBUTES},
        # the live path gets events in any order, including ones after as_of (ignored, as in training)
        "events": [
            {"type": t, "timestamp": fmt(ts), "page": p if isinstance(p, str) else None}
            for t, ts, p in zip(ev[S.EVENT_TYPE][::-1], ev[S.TIMESTAMP][::-1], ev[S.PAGE][::-1], strict=False)
        ],
    }


def _equal(batch_row: pd.Series, live: dict, i: int) -> None:
    for name, value in batch_row.items():
        got = live[name][i]
        if isinstance(value, float) and np.isnan(value):
            assert isinstance(got, float) and np.isnan(got), name
        else:
            assert got == value, (name, got, value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batch_and_single_lead_features_are_equal(demo_dataset, data):
    # given a random lead, a random moment in its life and a random way of sending its events
    i = data.draw(st.integers(0, len(demo_dataset.leads) - 1), label="lead")
    lead_id = demo_dataset.leads[S.LEAD_ID].iloc[i]
    age_ms = data.draw(st.integers(0, 200 * 86_400_000), label="age_ms")
    iso = data.draw(st.booleans(), label="iso timestamps")
    as_of = demo_dataset.leads[S.CREATED_AT].iloc[i] + pd.Timedelta(milliseconds=age_ms)
    rows = pd.DataFrame({S.LEAD_ID: [lead_id], "as_of": pd.Series([as_of]).astype("datetime64[ms, UTC]")})
    # when features come from the batch path and from the live path
    batch = feature_frame(demo_dataset, rows).iloc[0]
    live = lead_features([_live_lead(demo_dataset, lead_id, iso)], [to_ms(as_of.to_pydatetime())])
    # then they are equal, value for value
    _equal(batch, live, 0)


def test_many_leads_in_one_request_equal_the_batch(demo_dataset):
    # given 30 leads scored together at different moments
    sample = demo_dataset.leads.sample(30, random_state=5)
    as_of = (sample[S.CREATED_AT] + pd.to_timedelta(np.arange(30) * 3 + 1, unit="D")).astype(
        "datetime64[ms, UTC]"
    )
    rows = pd.DataFrame({S.LEAD_ID: sample[S.LEAD_ID].to_numpy(), "as_of": as_of.to_numpy()})
    batch = feature_frame(demo_dataset, rows)
    live = lead_features(
        [_live_lead(demo_dataset, lid, True) for lid in rows[S.LEAD_ID]],
        [to_ms(t.to_pydatetime()) for t in rows["as_of"]],
    )
    for i in range(len(rows)):
        _equal(batch.iloc[i], live, i)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_leads_rows_together_equal_each_row_alone(demo_dataset, data):
    # given a random lead and several moments in its life, in any order, some exactly at one of its events
    # or a window's length after one (training has several rows per lead)
    i = data.draw(st.integers(0, len(demo_dataset.leads) - 1), label="lead")
    lead_id = demo_dataset.leads[S.LEAD_ID].iloc[i]
    created = demo_dataset.leads[S.CREATED_AT].iloc[i]
    stamps = demo_dataset.events.loc[demo_dataset.events[S.LEAD_ID] == lead_id, S.TIMESTAMP]
    at_events = [
        int((t - created) / pd.Timedelta(milliseconds=1)) + days * 86_400_000
        for t in stamps
        for days in (0, 7, 30, 90)
    ]
    age = st.integers(0, 200 * 86_400_000)
    ages_ms = data.draw(
        st.lists(st.one_of(age, st.sampled_from(at_events)) if at_events else age, min_size=2, max_size=6),
        label="ages_ms",
    )
    as_of = created + pd.to_timedelta(ages_ms, unit="ms")
    rows = pd.DataFrame({S.LEAD_ID: lead_id, "as_of": pd.Series(as_of).astype("datetime64[ms, UTC]")})
    # when the rows are computed together and each one alone
    together = feature_frame(demo_dataset, rows)
    alone = [
        lead_features([_live_lead(demo_dataset, lead_id, True)], [to_ms(t.to_pydatetime())]) for t in as_of
    ]
    # then every row has the same values
    for k in range(len(rows)):
        _equal(together.iloc[k], alone[k], 0)
