"""Training histograms and PSI (model/drift.py): the bins stored with a model hold every value (missing and
unseen categories included), the same sample has PSI 0, a shifted one a large PSI, and a trained model
carries the histograms of every feature, the score and the grade mix."""

from __future__ import annotations

import numpy as np
import pytest
from leadscore.model import drift


def test_numeric_bins_hold_every_value_and_missing_has_its_own_bin():
    rng = np.random.default_rng(0)
    col = np.r_[rng.exponential(3.0, 900), [np.nan] * 100]
    spec = drift.feature_reference(col, categorical=False)
    # the shares of all bins add up to one, and missing values are the last bin
    assert sum(spec["proportions"]) == pytest.approx(1.0)
    assert spec["proportions"][-1] == pytest.approx(0.1)
    assert len(spec["proportions"]) == len(spec["edges"]) + 2 == len(drift.bin_labels(spec))
    # the same values give PSI 0; values far above training all land in the top bin: a large PSI
    assert drift.psi(spec["proportions"], drift.proportions(spec, col)) == pytest.approx(0.0, abs=1e-12)
    assert drift.psi(spec["proportions"], drift.proportions(spec, col + 100)) > 1.0


def test_a_numeric_feature_missing_throughout_training_has_an_any_and_a_missing_bin():
    spec = drift.feature_reference(np.full(50, np.nan), categorical=False)
    assert spec["proportions"] == [0.0, 1.0] and drift.bin_labels(spec) == ["(any)", "(missing)"]
    assert drift.proportions(spec, np.array([1.0, np.nan])) == [0.5, 0.5]


def test_categorical_bins_keep_unseen_and_missing_values_apart():
    col = np.array(["a"] * 50 + ["b"] * 30 + [None] * 20, dtype=object)
    spec = drift.feature_reference(col, categorical=True)
    assert spec["categories"] == ["a", "b"]
    assert spec["proportions"] == pytest.approx([0.5, 0.3, 0.0, 0.2])
    # a value never seen in training goes to "other"
    now = drift.proportions(spec, np.array(["a", "zz", "zz", None], dtype=object))
    assert now == pytest.approx([0.25, 0.0, 0.5, 0.25])
    assert drift.bin_labels(spec) == ["a", "b", "(other)", "(missing)"]


def test_psi_is_the_textbook_sum_and_an_empty_bin_stays_finite():
    e, a = [0.5, 0.5], [0.25, 0.75]
    assert drift.psi(e, a) == pytest.approx((0.25 - 0.5) * np.log(0.5) + (0.75 - 0.5) * np.log(1.5))
    assert np.isfinite(drift.psi([1.0, 0.0], [0.0, 1.0]))


def test_a_trained_model_carries_its_training_histograms(trained):
    info = trained.result.model.info
    assert drift.has_reference(info)
    ref = info["distributions"]
    assert set(ref["features"]) == set(trained.result.model.encoder.features)
    assert sum(ref["score"]["proportions"]) == pytest.approx(1.0)
    assert sum(ref["grades"].values()) == pytest.approx(1.0) and set(ref["grades"]) <= set("ABCD")
    # a model from before (per-feature quantiles only) has none
    assert not drift.has_reference({"distributions": {"score_deciles": [], "features": {}}})


def test_a_categorical_with_many_rare_values_does_not_warn_on_samples_of_its_own_population():
    # given a Zipf-like categorical of 40 values (half of them under 1 % each) seen on 20,000 training rows
    rng = np.random.default_rng(0)
    values = np.array([f"v{i}" for i in range(40)], dtype=object)
    share = 1 / np.arange(1, 41)
    share /= share.sum()
    training = rng.choice(values, 20_000, p=share)
    spec = drift.feature_reference(training, categorical=True)
    # then the rare values share "other": every bin of its own holds at least 1 % of training
    assert 10 < len(spec["categories"]) < 40
    assert min(spec["proportions"][: len(spec["categories"])]) >= drift.MIN_SHARE
    # and histograms stored before that rule (a bin for each of the 30 most frequent) are read the same way
    counts = {v: int((training == v).sum()) for v in values}
    top = sorted(counts, key=lambda v: -counts[v])[: drift.MAX_CATEGORIES]
    old = {
        "kind": "categorical",
        "categories": top,
        "proportions": [counts[v] / 20_000 for v in top]
        + [sum(counts[v] for v in values if v not in top) / 20_000, 0.0],
    }
    assert drift.merged(old)["categories"] == spec["categories"]
    assert drift.merged(old)["proportions"] == pytest.approx(spec["proportions"])
    # when 300 windows of 200 scores are drawn from the same population
    checks = [drift.compare(old, rng.choice(values, 200, p=share), 20_000) for _ in range(300)]
    # then none reaches the warn threshold (0.1) beyond its noise, and the noise alone bounds about 90 % of
    # the PSIs (its chi-square approximation aims at 95 %)
    assert max(c["psi"] - c["noise"] for c in checks) < 0.1
    assert np.mean([c["psi"] > c["noise"] for c in checks]) < 0.15
    # while a window where the rare values became common does
    rare = np.flatnonzero(share < drift.MIN_SHARE)
    moved = drift.compare(old, rng.choice(values[rare], 200), 20_000)
    assert moved["psi"] - moved["noise"] > 0.25
