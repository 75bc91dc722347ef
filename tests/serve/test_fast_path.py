"""The serving hot path gives exactly the numbers of the reference path."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features import schema as S
from leadscore.features.frames import feature_frame


def test_fast_explain_equals_explain_bit_for_bit(trained, demo_dataset):
    # given features of 300 leads at various moments (with missing values and unseen categories)
    model = trained.result.model
    sample = demo_dataset.leads.sample(300, random_state=3)
    as_of = (sample[S.CREATED_AT] + pd.to_timedelta(np.arange(300) % 90 + 1, unit="D")).astype("datetime64[ms, UTC]")
    rows = pd.DataFrame({S.LEAD_ID: sample[S.LEAD_ID].to_numpy(), "as_of": as_of.to_numpy()})
    table = feature_frame(demo_dataset, rows)
    values = {c: table[c].to_numpy() for c in table.columns}
    values["country"] = values["country"].copy()
    values["country"][:5] = "Atlantis"
    # when they are explained by the reference and by the compiled path
    ref, fast = model.explain(values), model.fast_explain(values)
    # then every number is identical
    np.testing.assert_array_equal(fast.X, ref.X)
    np.testing.assert_array_equal(fast.contributions, ref.contributions)
    np.testing.assert_array_equal(fast.logit, ref.logit)
    assert fast.base == ref.base
    # and results() (which uses the fast path) agrees with the reference probabilities
    results = model.results(values, list(rows[S.LEAD_ID]), explain_full=True)
    assert [r["probability"] for r in results] == [float(p) for p in ref.probability]
