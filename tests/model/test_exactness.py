"""Every model's explanation is exact: base + sum(contributions) == the model's log-odds, before and after
calibration, on many rows — including unseen and missing categories."""

from __future__ import annotations

import numpy as np
import pytest
from leadscore.features import catalog
from leadscore.features.frames import feature_frame
from leadscore.features.labels import training_rows
from leadscore.model.boosted import BoostedParams, fit_boosted
from leadscore.model.calibration import Platt
from leadscore.model.encoding import Encoder
from leadscore.model.scorecard import Scorecard
from leadscore.model.train import TrainConfig, fit_models
from leadscore.model.training_data import split_by_lead_time


@pytest.fixture(scope="module")
def table(demo_dataset):
    rows = training_rows(demo_dataset, TrainConfig().definition)
    feats = feature_frame(demo_dataset, rows)
    values = {f.name: feats[f.name].to_numpy() for f in catalog.FEATURES}
    encoder = Encoder.fit(values, tuple(values), catalog.CATEGORICAL)
    X = encoder.transform(values)
    # unseen categories at scoring time: a country and an industry the model never saw, and missing values
    j_country, j_industry = encoder.features.index("country"), encoder.features.index("industry")
    unseen = {
        **values,
        "country": np.where(np.arange(len(X)) % 7 == 0, "ZZ", values["country"]),
        "industry": np.where(np.arange(len(X)) % 5 == 0, None, values["industry"]),
    }
    X_new = encoder.transform(unseen)
    assert (X_new[:, j_country] == 1).any() and (X_new[:, j_industry] == 0).any()
    return rows, values, encoder, X, X_new


@pytest.mark.parametrize("params", [TrainConfig().boosted, BoostedParams()], ids=["production", "defaults"])
def test_boosted_contributions_match_sklearn_exactly(table, params):
    # given a boosted model with native categorical splits, with the settings training uses (shallow trees,
    # many rounds, early stopping) and with the library's deeper defaults
    rows, _, encoder, X, X_new = table
    y = rows["label"].to_numpy()
    est, trees = fit_boosted(X, y, encoder, params)
    assert any(p[0].nodes["is_categorical"].any() for p in est._predictors), "no categorical split to test"
    assert max(p[0].nodes["depth"].max() for p in est._predictors) <= params.max_depth
    if params == TrainConfig().boosted:
        assert est.n_iter_ > 50, "production settings should grow many rounds before early stopping"
    # when explaining rows (including unseen and missing categories)
    for data in (X, X_new):
        base, C = trees.contributions(data)
        # then base + contributions equals sklearn's own raw prediction, row by row
        np.testing.assert_allclose(base + C.sum(1), est._raw_predict(data).ravel(), atol=1e-6, rtol=0)
        # and a row explained alone (a live request's one-row walk) gets the very same contributions
        for i in range(0, len(data), max(1, len(data) // 50)):
            np.testing.assert_array_equal(trees.contributions(data[i : i + 1])[1][0], C[i])


def test_scorecard_contributions_match_the_logistic_regression(table):
    rows, _, encoder, X, X_new = table
    y = rows["label"].to_numpy()
    sc = Scorecard.fit(X, y, encoder)
    for data in (X, X_new):
        base, C = sc.contributions(data, encoder)
        design = Scorecard._design(
            Scorecard._bins(data, sc.edges, encoder.categorical_mask),
            np.concatenate([[0], np.cumsum([len(t) for t in sc.tables])]),
        )
        np.testing.assert_allclose(base + C.sum(1), sc.estimator.decision_function(design), atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["scorecard", "boosted"])
def test_calibrated_model_explanation_adds_up(table, family):
    # given a trained, Platt-calibrated model of each family
    rows, values, _, _, _ = table
    holdout = split_by_lead_time(rows, 0.2)
    result = fit_models(values, rows, holdout, catalog.CATEGORICAL, TrainConfig(model=family))
    model = result.model
    assert model.family == family and model.calibration != Platt()
    # when explaining every row
    ex = model.explain(values)
    # then the calibrated log-odds are exactly base + contributions, and the probability is its sigmoid
    np.testing.assert_allclose(ex.base + ex.contributions.sum(1), ex.logit, atol=1e-9, rtol=0)
    raw_base, raw_C = model.raw(ex.X)
    np.testing.assert_allclose(ex.logit, model.calibration(raw_base + raw_C.sum(1)), atol=1e-6, rtol=0)
    # and the API's results carry the same numbers
    res = model.results({k: v[:20] for k, v in values.items()}, list(rows["lead_id"][:20]), explain_full=True)
    for i, r in enumerate(res):
        e = r["explanation"]
        assert abs(e["base"] + sum(e["contributions"].values()) - e["logit"]) < 1e-6
        assert abs(r["probability"] - ex.probability[i]) < 1e-12
        assert r["score"] == round(100 * r["probability"])
