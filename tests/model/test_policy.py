"""Grades: the same letters for a request's few leads as for a batch of millions."""

from __future__ import annotations

import numpy as np
from leadscore.model.policy import HandoffPolicy


def test_grades_follow_the_cutoffs_for_few_and_many_leads():
    # given a policy and probabilities on, just below and just above each cutoff, and missing ones
    policy = HandoffPolicy(kind="capacity", threshold=0.4, grade_cutoffs=(0.4, 0.12, 0.04))
    edges = np.array([0.4, 0.12, 0.04])
    p = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 1), [0.0, 1.0, np.nan]])
    many = np.concatenate([p, np.random.default_rng(0).random(1000)])
    # when they are graded alone (a request) and inside a big batch
    few = [policy.grade(p[i:i + 1]).tolist()[0] for i in range(len(p))]
    batch = policy.grade(many).tolist()
    # then the letters are the same, and a probability at a cutoff gets the higher grade
    assert few == batch[:len(p)] == policy.grade(p).tolist()
    assert few == ["A", "B", "C", "B", "C", "D", "A", "B", "C", "D", "A", "D"]
