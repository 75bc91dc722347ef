"""The plots a person reads: the global reasons summary names features by the catalogue's labels and keeps
its legend off the bars."""

from __future__ import annotations

import numpy as np

from leadscore.features import catalog
from leadscore.model import evaluate


def test_reasons_summary_uses_catalogue_labels_and_its_legend_covers_no_bar():
    # given contributions of catalogue features and of a flat export's column
    features = ("engagement_7d", "days_since_visit_pricing", "lead_age_days", "seniority", "Lead Origin")
    rng = np.random.default_rng(0)
    C = rng.normal(size=(500, len(features))) * np.array([1.0, 0.8, 0.6, 0.4, 0.2])
    p, y = rng.uniform(size=500), (rng.uniform(size=500) < 0.3).astype(int)
    # when the run's figures are drawn
    fig = evaluate.figures(p, y, C, features)["reasons_summary.png"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # lay the figure out as a PNG render would
    ax = fig.axes[0]
    shown = [t.get_text() for t in ax.get_yticklabels()]
    # then each feature is named by its catalogue label (a flat column by its own header), most important on top
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
    # then the clustered z is the lead-level one (the repeats add no evidence), the row-level one is sqrt(6) larger
    assert abs(naive["z"] / clustered["z"] - np.sqrt(6)) < 0.05
    # and twice the rate on as many leads is a shift beyond noise
    c = np.repeat((rng.uniform(size=900) < 0.2).astype(int), 6)
    shifted = positive_rate_shift(a, c, ga, gb)
    assert shifted["shifted"] and shifted["z"] > 3 and not clustered["shifted"]
