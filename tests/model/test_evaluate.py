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
