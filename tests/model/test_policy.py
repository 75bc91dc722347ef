"""Grades: the same letters for a request's few leads as for a batch of millions."""

from __future__ import annotations

import numpy as np
import pytest
from leadscore.model.policy import HandoffPolicy


def test_grades_follow_the_cutoffs_for_few_and_many_leads():
    # given a policy and probabilities on, just below and just above each cutoff, and missing ones
    policy = HandoffPolicy(kind="capacity", threshold=0.4, grade_cutoffs=(0.4, 0.12, 0.04))
    edges = np.array([0.4, 0.12, 0.04])
    p = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 1), [0.0, 1.0, np.nan]])
    many = np.concatenate([p, np.random.default_rng(0).random(1000)])
    # when they are graded alone (a request) and inside a big batch
    few = [policy.grade(p[i : i + 1]).tolist()[0] for i in range(len(p))]
    batch = policy.grade(many).tolist()
    # then the letters are the same, and a probability at a cutoff gets the higher grade
    assert few == batch[: len(p)] == policy.grade(p).tolist()
    assert few == ["A", "B", "C", "B", "C", "D", "A", "B", "C", "D", "A", "D"]


def _data(n: int = 400, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    p = np.round(rng.random(n), 3)  # ties included, as real scores have
    y = (rng.random(n) < p).astype(int)
    as_of = pd.Series(
        pd.Timestamp("2025-01-06", tz="UTC") + pd.to_timedelta(np.sort(rng.random(n)) * 7, unit="D")
    )
    return p, y, as_of


def test_capacity_rounds_to_whole_leads_with_or_without_weights():
    from leadscore.model.policy import choose_policy

    # given 400 leads over one week (distinct scores) and sales taking 50.6 leads a week
    p, y, as_of = _data()
    p = np.random.default_rng(1).permutation(len(p)) / len(p)
    # when the capacity policy is chosen without weights and with weights of 1
    plain = choose_policy(p, y, as_of, "capacity", 50.6)
    ones = choose_policy(p, y, as_of, "capacity", 50.6, weight=np.ones(len(p)))
    # then both hand over 51 leads (rounded, as before weights existed), and are the same policy
    assert (p >= plain.threshold).sum() == 51
    assert ones == plain


def test_integer_weights_choose_the_policy_that_duplicated_rows_choose():
    from leadscore.model.policy import choose_policy

    # given leads with weights 1 to 20 (an explored lead at 5 % stands for 20)
    p, y, as_of = _data()
    w = np.random.default_rng(2).choice([1, 1, 1, 2, 20], size=len(p))
    dup = np.repeat(np.arange(len(p)), w)
    for kind, target in (("capacity", 150.0), ("capacity", 37.4), ("precision", 0.7), ("f1", None)):
        # when the policy is chosen with the weights, and on the rows repeated that many times
        weighted = choose_policy(p, y, as_of, kind, target, weight=w)
        repeated = choose_policy(p[dup], y[dup], as_of.iloc[dup].reset_index(drop=True), kind, target)
        # then it is the same policy: threshold, grades and expected volume, precision and recall
        assert weighted.threshold == repeated.threshold, kind
        assert weighted.grade_cutoffs == pytest.approx(repeated.grade_cutoffs, rel=1e-12)
        assert weighted.expected_per_week == pytest.approx(repeated.expected_per_week, rel=1e-12)
        assert weighted.expected_precision == pytest.approx(repeated.expected_precision, rel=1e-12)
        assert weighted.expected_recall == pytest.approx(repeated.expected_recall, rel=1e-12)
