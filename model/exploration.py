"""Exploration: hand a small share of below-threshold leads to sales anyway, so their verdicts can correct the
selection bias of learning only from the leads the last model liked.

The draw is per lead, never per request: a hash of (seed, lead id) mapped to [0, 1), explored when below the
share. Rescoring a lead (a new event, a new model) never re-rolls it, so a lead is not handed over just
because it was scored often, and the probability it was handed over is exactly `propensity`: 1 at or above
the threshold, the share below it. That probability is what training weights the lead's label by
(docs/models.md, "Exploration and inverse-propensity weights").

`handoff` is the one place a handoff decision is made (through `HandoffPolicy.qualified` and `propensity`):
the API (serve/scoring.py, through `ScoringModel.results`), `leadscore import`, batch `leadscore score` and
the MLflow pyfunc all go through it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

MAX_SHARE = 0.5  # beyond it, "exploration" is a second policy, not a correction of the first
_SCALE = float(2**64)

if TYPE_CHECKING:
    from leadscore.model.policy import HandoffPolicy


@dataclass(frozen=True, slots=True)
class Exploration:
    """The exploration in force: `share` of below-threshold leads, drawn with `seed` (Settings
    `exploration_share`, `exploration_seed`)."""

    share: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= MAX_SHARE:
            raise ValueError(f"exploration share must be between 0 and {MAX_SHARE}, not {self.share!r}")


NONE = Exploration()


def uniform(lead_ids: Iterable[object], seed: int) -> np.ndarray:
    """Each lead's draw in [0, 1): the first 8 bytes of BLAKE2b("seed|lead_id"), the same in every process,
    platform and version (no Python `hash`, which is salted per process)."""
    prefix = f"{int(seed)}|".encode()
    return (
        np.array(
            [
                int.from_bytes(hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest(), "big")
                for i in lead_ids
            ],
            dtype=np.float64,
        )
        / _SCALE
    )


def explored(lead_ids: Sequence[object] | np.ndarray, share: float, seed: int) -> np.ndarray:
    """True for the leads drawn for exploration (whatever their score): uniform(id, seed) < share."""
    if share <= 0:
        return np.zeros(len(lead_ids), dtype=bool)
    return uniform(lead_ids, seed) < share


def propensity(above: np.ndarray, share: float) -> np.ndarray:
    """The probability that a lead was handed over, given whether it is at or above the threshold (`above`,
    `HandoffPolicy.qualified`): 1 above, the exploration `share` below."""
    if share <= 0:  # the default: 1 or 0, without building a second array of the share
        return above.astype(np.float64)
    return np.where(above, 1.0, float(share))


def handoff(
    p: np.ndarray,
    lead_ids: Sequence[object] | np.ndarray,
    policy: HandoffPolicy,
    exploration: Exploration = NONE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(handed over, explored, propensity) per lead under `policy` (a `HandoffPolicy`: its `qualified` says
    who is at or above the threshold). Handed over = at or above the threshold, or below it and drawn for
    exploration; explored = handed over only because it was drawn."""
    above = policy.qualified(p)
    if exploration.share <= 0:  # the default: no hashing, no draws (a request's hot path)
        return above, np.zeros(len(above), dtype=bool), propensity(above, 0.0)
    drawn = ~above
    if drawn.any():
        drawn[drawn] = explored(
            np.asarray(lead_ids, dtype=object)[drawn], exploration.share, exploration.seed
        )
    return above | drawn, drawn, propensity(above, exploration.share)
