"""The gate between models trained on different columns (issue 13.2): it compares them only on rows both
can score, says when the columns differ, and refuses (never a traceback) when the champion needs a column
the challenger's holdout does not have. On the X Education export (skipped, visibly, when it is absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from leadscore.features.table import read_table
from leadscore.model import gate
from leadscore.model.train import TrainConfig, fit_models
from support import SHARED_DATASETS

from leadscore.cli.table import CONSTANT_AS_OF, stratified_holdout

X_EDUCATION = SHARED_DATASETS / "x-education-leads.csv"
DROPPED = "Asymmetrique Activity Index"


@pytest.fixture(scope="module")
def export():
    if not X_EDUCATION.exists():
        pytest.skip(f"the X Education export is not at {X_EDUCATION}")
    return read_table(X_EDUCATION, "Converted", id_column="Prospect ID")


def fit(tab, features: list[str]):
    """A scorecard on `features` of the export, as `leadscore table --model scorecard` fits it; and its
    holdout (column -> values, labels)."""
    y = tab.label.astype(int)
    holdout = stratified_holdout(y, 0.2, seed=0)
    rows = pd.DataFrame(
        {
            "lead_id": [f"{i:09d}" for i in np.random.default_rng(1).permutation(len(y))],
            "as_of": CONSTANT_AS_OF,
            "label": y,
        }
    )
    values = tab.values(features)
    result = fit_models(
        values,
        rows,
        holdout,
        tuple(f for f in features if tab.columns[f].kind == "categorical"),
        TrainConfig(model="scorecard"),
    )
    return result.model, result.holdout_values, y[holdout]


def test_challenger_lacking_a_champion_column_is_refused_with_the_column_named(export):
    assert DROPPED in export.features
    champion, _, _ = fit(export, list(export.features))
    # given a challenger trained without one of the champion's columns (`--drop`)
    challenger, values, y = fit(export, [c for c in export.features if c != DROPPED])
    # when the gate compares them, it refuses and says which column is missing (no KeyError)
    decision = gate.compare(challenger, champion, values, y, "2", "1")
    assert not decision.promote and decision.rule == "incomparable"
    assert (
        f"drops '{DROPPED}'" in decision.reason and "cannot be compared on the same rows" in decision.reason
    )
    assert decision.auc_diff is None


def test_challenger_with_an_extra_column_is_compared_on_the_champions_columns(export):
    champion, _, _ = fit(export, [c for c in export.features if c != DROPPED])
    # given a challenger that adds a column: its holdout has every column the champion needs
    challenger, values, y = fit(export, list(export.features))
    decision = gate.compare(challenger, champion, values, y, "2", "1")
    # then both are scored on the same rows, and the decision says the columns differ
    assert decision.rule in ("better", "worse", "worse_calibrated", "tie", "fresher")
    assert decision.auc_diff is not None and np.isfinite(decision.auc_diff)
    assert f"adds '{DROPPED}'" in decision.reason and "scored on its own columns" in decision.reason
