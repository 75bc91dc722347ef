"""The exploration draw: per lead, deterministic, at the configured share; propensities of the policy."""

from __future__ import annotations

import numpy as np
import pytest
from leadscore.model.exploration import Exploration, explored, handoff, propensity, uniform
from leadscore.model.policy import HandoffPolicy

POLICY = HandoffPolicy(kind="f1", threshold=0.3, grade_cutoffs=(0.3, 0.1, 0.03))


def test_the_draw_is_a_fixed_function_of_seed_and_lead_id_at_the_configured_share():
    # given 40,000 lead ids
    ids = [f"lead-{i}" for i in range(40_000)]
    # when they are drawn twice with one seed, in another order, and with another seed
    first = explored(ids, 0.05, seed=7)
    again = explored(list(reversed(ids)), 0.05, seed=7)[::-1]
    other = explored(ids, 0.05, seed=8)
    # then the same leads are drawn whatever the order (a lead's draw never depends on the request)
    assert np.array_equal(first, again)
    # and the share drawn is 5 % within binomial noise (4 standard deviations: 0.0044)
    sd = np.sqrt(0.05 * 0.95 / len(ids))
    assert abs(first.mean() - 0.05) < 4 * sd and abs(other.mean() - 0.05) < 4 * sd
    # and another seed draws other leads (independent: overlap ~ 0.05 * 0.05)
    assert (first & other).mean() < 0.05 * 0.05 + 4 * sd
    # and the draw is uniform: a larger share draws a superset
    assert np.all(explored(ids, 0.2, seed=7)[first])
    # and share 0 draws no one
    assert not explored(ids, 0.0, seed=7).any()


def test_the_draw_is_the_same_in_every_process():
    # the hash is BLAKE2b, not Python's per-process salted hash: these values hold on any machine
    u = uniform(["lead-1", "lead-2"], seed=0)
    assert u.tolist() == pytest.approx(uniform(np.array(["lead-1", "lead-2"], dtype=object), 0).tolist())
    assert np.all((u >= 0) & (u < 1))
    import subprocess
    import sys

    code = (
        "from leadscore.model.exploration import uniform; "
        "print(repr(uniform(['lead-1', 'lead-2'], 0).tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    ).stdout
    assert eval(out) == u.tolist()


def test_handoff_hands_over_above_the_threshold_and_the_drawn_below_it_with_their_propensities():
    # given scores around a threshold of 0.3 and 5 % exploration
    rng = np.random.default_rng(0)
    ids = np.array([f"h-{i}" for i in range(20_000)], dtype=object)
    p = rng.uniform(0, 1, len(ids))
    ex = Exploration(share=0.05, seed=3)
    # when the handoff is decided
    handed, was_explored, prop = handoff(p, ids, POLICY, ex)
    drawn = explored(ids, 0.05, 3)
    # then every lead at or above the threshold is handed over, at propensity 1, never "explored"
    above = p >= 0.3
    assert handed[above].all() and (prop[above] == 1).all() and not was_explored[above].any()
    # and below it exactly the drawn leads are handed over, marked explored, at propensity = the share
    assert np.array_equal(handed[~above], drawn[~above]) and np.array_equal(was_explored, drawn & ~above)
    assert (prop[~above] == 0.05).all()
    assert np.array_equal(prop, propensity(p >= 0.3, 0.05))
    # and a lead rescored with another probability keeps its draw: below the threshold again, the same answer
    again = handoff(p[::-1] * 0.2, ids[::-1], POLICY, ex)[1][::-1]
    assert np.array_equal(again, drawn)
    # and with no exploration the handoff is the policy's threshold alone, propensity 1 or 0
    handed0, explored0, prop0 = handoff(p, ids, POLICY)
    assert (
        np.array_equal(handed0, above) and not explored0.any() and np.array_equal(prop0, above.astype(float))
    )


def test_exploration_share_is_bounded():
    with pytest.raises(ValueError, match="between 0 and 0.5"):
        Exploration(share=0.7)
    from pydantic import ValidationError

    from leadscore.settings import Settings

    with pytest.raises(ValidationError, match="exploration_share"):
        Settings(exploration_share=-0.1)
    assert Settings(exploration_share=0.05, exploration_seed=9).exploration() == Exploration(0.05, 9)
