"""Facts the docs quote from the code: a figure stated in prose is the code's constant, not a copy of it."""

from __future__ import annotations

import re

from support import REPO


def _percents(text: str, pattern: str) -> set[int]:
    return {int(m) for m in re.findall(pattern, " ".join(text.split()))}


def test_flat_export_splits_in_the_docs_are_the_codes_fractions():
    # given the fractions the `table` command and training use
    from leadscore.model.train import TrainConfig

    from leadscore.cli.table import HOLDOUT_FRACTION

    doc = (REPO / "docs" / "flat-exports.md").read_text()
    # when the docs state how many rows calibrate and how many are held out
    calibrate = (
        _percents(doc, r"calibration rows are a seeded random (\d+) %")
        | _percents(doc, r"last (\d+) % of the remaining rows calibrate")
        | _percents(doc, r"takes the last (\d+) % by")
    )
    holdout = _percents(doc, r"random (\d+) % of each class is the holdout") | _percents(
        doc, r"the last (\d+) % of rows as they appear in the file are the holdout"
    )
    # then every statement is there and quotes the constant
    assert calibrate == {round(100 * TrainConfig().calibration_fraction)}
    assert holdout == {round(100 * HOLDOUT_FRACTION)}
