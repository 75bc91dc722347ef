"""Reason groups and the pick of each row's top reasons.

Features that say the same thing over different windows ("2 visits in 7 days", "... in 30 days") form one
reason group; a group's impact is the sum of its members' contributions. `pick_reasons` picks the top
groups of every row, and the member that speaks for each, in one compiled pass (`_pick`): the same code
for one lead of a request and for a million of a batch.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from leadscore.features import catalog
from numba import njit

POINTS_PER_DOUBLING = 20.0  # 20 points double the odds of qualifying (the scorecard convention)
TOP_N = 5
# A reason moves the score by at least one point: below half a point its points round to 0 ("0 Industry:
# manufacturing" is not a reason). In log-odds: 0.5 / POINTS_PER_DOUBLING * ln 2.
MIN_ABS_IMPACT = 0.5 * math.log(2) / POINTS_PER_DOUBLING


def reason_group(name: str) -> str:
    """Features that say the same thing over different windows ("2 visits in 7 days", "... in 30 days")
    form one reason group."""
    for w in catalog.WINDOWS:
        if name.endswith(f"_{w}d"):
            return name.removesuffix(f"_{w}d")
    return name


@lru_cache(maxsize=32)
def groups(features: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """(group names, group index of each feature) for a model's feature list."""
    names: list[str] = []
    index = np.empty(len(features), dtype=np.int64)
    for j, f in enumerate(features):
        g = reason_group(f)
        if g not in names:
            names.append(g)
        index[j] = names.index(g)
    return tuple(names), index


@lru_cache(maxsize=32)
def _csr(features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(members, starts): each reason group's member features in feature order, group after group;
    group g is members[starts[g]:starts[g + 1]]."""
    names, index = groups(features)
    members = np.argsort(index, kind="stable").astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(index, minlength=len(names)))])
    return members, starts.astype(np.int64)


@njit(cache=True, nogil=True)
def _pick(  # pragma: no cover - compiled
    C: np.ndarray,
    members: np.ndarray,
    starts: np.ndarray,
    top_n: int,
    min_abs: float,
    group: np.ndarray,
    member: np.ndarray,
    impact: np.ndarray,
    ok: np.ndarray,
) -> None:
    """Top reasons of each row of C (rows, features), written into (rows, 2 * top_n) outputs.

    A group's impact is the sum of its members' contributions, added in feature order. Slots 0..top_n-1:
    the top_n largest impacts (ties: the lower group first), as a stable sort of -impact orders them;
    slots top_n..: the top_n smallest (ties: the higher group first), i.e. that order reversed. A slot is ok
    when its impact is beyond +min_abs (positives) or -min_abs (negatives); a slot without a group (fewer
    groups than top_n) reads group 0 and is not ok. `member`: the group's member pushing hardest in the
    slot's direction (the first in feature order on ties)."""
    n = C.shape[0]
    n_groups = starts.shape[0] - 1
    G = np.empty(n_groups)
    taken = np.empty(n_groups, dtype=np.bool_)
    for i in range(n):
        for g in range(n_groups):
            s = 0.0
            for k in range(starts[g], starts[g + 1]):
                s += C[i, members[k]]
            G[g] = s
        for side in range(2):
            sign = 1.0 if side == 0 else -1.0
            taken[:] = False
            for slot in range(top_n):
                out = side * top_n + slot
                best = -1
                if slot < n_groups:
                    for g in range(n_groups):
                        if taken[g]:
                            continue
                        if best < 0 or (side == 0 and G[g] > G[best]) or (side == 1 and G[g] <= G[best]):
                            best = g
                    taken[best] = True
                g = best if best >= 0 else 0
                group[i, out] = g
                good = best >= 0 and (G[g] > min_abs if side == 0 else G[g] < -min_abs)
                ok[i, out] = good
                impact[i, out] = G[g] if good else 0.0
                strongest = members[starts[g]]
                for k in range(starts[g] + 1, starts[g + 1]):
                    if sign * C[i, members[k]] > sign * C[i, strongest]:
                        strongest = members[k]
                member[i, out] = strongest


def pick_reasons(
    C: np.ndarray, features: tuple[str, ...], top_n: int = TOP_N
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(group, member, impact, ok), each (rows, 2 * top_n): the top `top_n` positive reason groups of each
    row (strongest first), then the top `top_n` negative ones (most negative first); see `_pick`."""
    members, starts = _csr(features)
    n = C.shape[0]
    group = np.empty((n, 2 * top_n), dtype=np.int64)
    member = np.empty((n, 2 * top_n), dtype=np.int64)
    impact = np.empty((n, 2 * top_n), dtype=np.float64)
    ok = np.empty((n, 2 * top_n), dtype=np.bool_)
    if len(starts) > 1:
        _pick(
            np.ascontiguousarray(C, dtype=np.float64),
            members,
            starts,
            top_n,
            MIN_ABS_IMPACT,
            group,
            member,
            impact,
            ok,
        )
    else:  # a model without features
        group[:], member[:], impact[:], ok[:] = 0, 0, 0.0, False
    return group, member, impact, ok
