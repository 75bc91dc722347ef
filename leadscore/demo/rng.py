"""Counter-based randomness: every draw is a pure function of (seed, stream, lead, day, slot).

This makes the simulation independent of how leads are chunked and lets it stay fully vectorised.
The mixer is the SplitMix64 finaliser (a bijection on 64-bit integers).
"""

from __future__ import annotations

import numpy as np

_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

# streams
DAILY, STATIC, TIMES, AFTER, DUPS = 0, 1, 2, 3, 4


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def seed_key(seed: int) -> np.uint64:
    x = np.array([(seed * 0x2545F4914F6CDD1D + 0x1234567) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    return _mix(_mix(x))[0]


def uniform(key: np.uint64, stream: int, lead, day, slot) -> np.ndarray:
    """Uniform floats in [0, 1) for global lead index < 2**30, day < 1024, slot < 256 (broadcast)."""
    lead = np.asarray(lead, dtype=np.uint64)
    day = np.asarray(day, dtype=np.uint64)
    slot = np.asarray(slot, dtype=np.uint64)
    c = (np.uint64(stream) << np.uint64(48)) | (lead << np.uint64(18)) | (day << np.uint64(8)) | slot
    c = np.atleast_1d(c)
    with np.errstate(over="ignore"):
        x = _mix(c * _GOLD + key)
        x = _mix(x ^ key)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def poisson_inv(u: np.ndarray, lam: np.ndarray, cap: int = 60) -> np.ndarray:
    """Poisson(lam) by inversion of a uniform (exact up to the cap)."""
    k = np.zeros(u.shape, dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    todo = np.flatnonzero(u >= cdf)
    j = 0
    while todo.size and j < cap:
        j += 1
        p[todo] *= lam[todo] / j
        cdf[todo] += p[todo]
        k[todo] = j
        todo = todo[u[todo] >= cdf[todo]]
    return k


def categorical(u: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Index drawn from rows of cumulative probabilities cum (n, k)."""
    return np.minimum((u[:, None] >= cum).sum(axis=1), cum.shape[1] - 1)
