"""The plots a person reads: the global reasons summary names features by the catalogue's labels and keeps
its legend off the bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from leadscore.features import catalog
from leadscore.model import plots


def test_reasons_summary_uses_catalogue_labels_and_its_legend_covers_no_bar():
    # given contributions of catalogue features and of a flat export's column
    features = ("engagement_7d", "days_since_visit_pricing", "lead_age_days", "seniority", "Lead Origin")
    rng = np.random.default_rng(0)
    C = rng.normal(size=(500, len(features))) * np.array([1.0, 0.8, 0.6, 0.4, 0.2])
    p, y = rng.uniform(size=500), (rng.uniform(size=500) < 0.3).astype(int)
    # when the run's figures are drawn
    fig = plots.figures(p, y, C, features)["reasons_summary.png"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # lay the figure out as a PNG render would
    ax = fig.axes[0]
    shown = [t.get_text() for t in ax.get_yticklabels()]
    # then each feature is named by its catalogue label (a flat column by its own header), most important on
    # top
    expected = [catalog.BY_NAME[f].title for f in features[:-1]] + ["Lead Origin"]
    assert shown == expected[::-1]
    assert all("_" not in label for label in shown)
    # and the legend sits outside the axes, so it covers no bar
    (legend,) = fig.legends
    renderer = fig.canvas.get_renderer()
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert {t.get_text() for t in legend.get_texts()} == {"raises the score", "lowers the score"}


def test_positive_rate_shift_counts_a_leads_rows_once():
    from leadscore.model.evaluate import positive_rate_shift

    rng = np.random.default_rng(0)
    # given two slices with the same true rate, each lead's label repeated on its 6 rows (as ages are)
    a, b = (np.repeat((rng.uniform(size=n) < 0.1).astype(int), 6) for n in (400, 900))
    ga, gb = np.repeat(np.arange(400), 6), np.repeat(np.arange(400, 1300), 6)
    clustered, naive = positive_rate_shift(a, b, ga, gb), positive_rate_shift(a, b)
    # then the clustered z is the lead-level one (the repeats add no evidence), the row-level one is sqrt(6)
    # larger
    assert abs(naive["z"] / clustered["z"] - np.sqrt(6)) < 0.05
    # and twice the rate on as many leads is a shift beyond noise
    c = np.repeat((rng.uniform(size=900) < 0.2).astype(int), 6)
    shifted = positive_rate_shift(a, c, ga, gb)
    assert shifted["shifted"] and shifted["z"] > 3 and not clustered["shifted"]


def _sample(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(n), 2)  # ties included
    y = (rng.random(n) < p).astype(int)
    w = rng.choice([1, 1, 2, 5, 20], size=n)  # an explored lead at 5 % stands for 20
    return p, y, w, np.repeat(np.arange(n), w)


def test_integer_weights_give_the_metrics_of_the_rows_repeated():
    from leadscore.model.evaluate import metrics
    from leadscore.model.policy import choose_policy

    # given predictions with inverse-propensity weights, and the same rows each repeated `weight` times
    p, y, w, dup = _sample()
    as_of = pd.Series(pd.Timestamp("2025-01-06", tz="UTC") + pd.to_timedelta(np.arange(len(p)), unit="h"))
    policy = choose_policy(p, y, as_of, "f1", weight=w)
    # when the holdout metrics are computed both ways
    weighted, repeated = metrics(p, y, policy, weight=w), metrics(p[dup], y[dup], policy)
    # then every figure is the same: ROC/PR AUC, Brier, log loss, ECE (equal-weight bins), lift, rates
    # (but `n`, which stays the number of rows)
    assert (
        weighted.keys() == repeated.keys() and weighted.pop("n") == len(p) and repeated.pop("n") == len(dup)
    )
    for k, v in repeated.items():
        assert weighted[k] == pytest.approx(v, rel=1e-9, abs=1e-12, nan_ok=True), k
    # and weights of 1 are exactly no weights
    np.testing.assert_equal(metrics(p, y, policy, weight=np.ones(len(p))), metrics(p, y, policy))


def test_unweighted_ece_is_the_mean_gap_over_equal_count_bins():
    from leadscore.model.evaluate import ece

    p, y, _, _ = _sample(n=103, seed=3)
    chunks = np.array_split(np.argsort(p, kind="stable"), 10)  # 4 bins of 11 rows, then 10 each
    expected = sum(len(c) * abs(p[c].mean() - y[c].mean()) for c in chunks) / len(p)
    assert ece(p, y) == pytest.approx(expected, rel=1e-12)


def test_weighted_paired_comparisons_estimate_the_rows_repeated():
    from leadscore.model.evaluate import paired_bootstrap_auc, paired_bootstrap_ece

    # given two predictions of the same weighted rows
    p, y, w, dup = _sample(seed=1)
    q = np.clip(p + np.random.default_rng(2).normal(0, 0.2, len(p)), 0, 1)
    # when they are compared with the weights, and on the rows repeated
    auc_w, auc_r = (
        paired_bootstrap_auc(y, p, q, n=50, weight=w),
        paired_bootstrap_auc(y[dup], p[dup], q[dup], n=50),
    )
    ece_w, ece_r = (
        paired_bootstrap_ece(y, p, q, n=50, weight=w),
        paired_bootstrap_ece(y[dup], p[dup], q[dup], n=50),
    )
    # then the point estimates are those of the repeated rows, and differ from the unweighted ones
    assert auc_w["diff"] == pytest.approx(auc_r["diff"], rel=1e-9)
    assert (ece_w["new"], ece_w["old"]) == pytest.approx((ece_r["new"], ece_r["old"]), rel=1e-9)
    # and resampling leads (a row's copies are one lead) gives the same ECE interval both ways
    ids = np.arange(len(p))
    grouped_w = paired_bootstrap_ece(y, p, q, groups=ids, n=50, weight=w)
    grouped_r = paired_bootstrap_ece(y[dup], p[dup], q[dup], groups=dup, n=50)
    assert (grouped_w["low"], grouped_w["high"]) == pytest.approx(
        (grouped_r["low"], grouped_r["high"]), rel=1e-9
    )
    assert auc_w["diff"] != pytest.approx(paired_bootstrap_auc(y, p, q, n=50)["diff"], rel=1e-3)
    assert auc_w["low"] < auc_w["diff"] < auc_w["high"]


def test_reliability_plots_are_weighted_like_the_ece_beside_them():
    from leadscore.model.evaluate import ece, reliability_points
    from leadscore.model.plots import figures

    from leadscore.recalibration import reliability_before_after

    # given weighted holdout predictions, and the same rows repeated
    p, y, w, dup = _sample(seed=4)
    q = np.clip(p * 0.8, 0, 1)
    # when the training run's and the recalibration's reliability plots are drawn with the weights
    C = np.zeros((len(p), 1))
    line = figures(p, y, C, ("x",), weight=w)["reliability.png"].axes[0].lines[1]
    fig = reliability_before_after(y, q, p, weight=w)
    # then their points are the repeated rows' (the population's), not the handed-over rows'
    xs, ys = reliability_points(p[dup], y[dup], 15)
    assert np.allclose(line.get_xdata(), xs) and np.allclose(line.get_ydata(), ys)
    assert not np.allclose(line.get_ydata(), reliability_points(p, y, 15)[1])
    champion, recalibrated = fig.axes[0].lines[:2]
    assert np.allclose(recalibrated.get_ydata(), reliability_points(p[dup], y[dup], 10)[1])
    # and the ECEs in the legend are the weighted ones the gate compared
    assert champion.get_label() == f"champion (ECE {ece(q, y, weight=w):.3f})"
    assert recalibrated.get_label() == f"recalibrated (ECE {ece(p[dup], y[dup]):.3f})"
    assert f"{ece(p, y, weight=w):.3f}" != f"{ece(p, y):.3f}"


def test_weighted_base_rate_shift_is_that_of_the_rows_repeated():
    from leadscore.model.evaluate import positive_rate_shift
    from leadscore.model.training_data import base_rate_warning

    # given two slices with inverse-propensity weights, each row its own lead
    p, y, w, dup = _sample(seed=5)
    half = len(y) // 2
    ids = np.arange(len(y))
    # when the shift is tested with the weights, and on the rows repeated (a row's copies: one lead)
    weighted, _ = base_rate_warning(y[:half], y[half:], ids[:half], ids[half:], w[:half], w[half:])
    d1, d2 = dup[dup < half], dup[dup >= half]
    repeated = positive_rate_shift(y[d1], y[d2], d1, d2)
    # then rates and z are the same, and differ from the unweighted ones
    for k in ("rate_before", "rate_after", "z"):
        assert weighted[k] == pytest.approx(repeated[k], rel=1e-9), k
    assert weighted["rate_before"] != pytest.approx(positive_rate_shift(y[:half], y[half:])["rate_before"])
    # and weights of 1 are exactly no weights
    assert positive_rate_shift(
        y[:half],
        y[half:],
        ids[:half],
        ids[half:],
        weight_before=np.ones(half),
        weight_after=np.ones(len(y) - half),
    ) == positive_rate_shift(y[:half], y[half:], ids[:half], ids[half:])
