"""Seniority from a free-text job title.

Titles are messy ("Sr. Data Eng", "VP, Growth", "Head of IT", "student"); a salesperson reads them by keyword
and so does this module. Order matters: the first level whose pattern matches wins, so "Assistant to the VP"
is not an executive but "VP Marketing" is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

import numpy as np

UNKNOWN: Final = "unknown"

_PATTERNS: Final = (
    ("student", r"\b(student|intern|internship|trainee|graduate|phd candidate|undergrad)\b"),
    ("junior", r"\b(junior|jr\.?|assistant|associate|apprentice|entry)\b"),
    (
        "executive",
        r"\b(ceo|cto|cfo|coo|cmo|cio|cro|chief|founder|co-founder|owner|president|partner|"
        r"vp|vice president|svp|evp|managing director|general manager)\b",
    ),
    ("director", r"\b(director|head of|head|principal)\b"),
    ("manager", r"\b(manager|mgr|lead|team lead|supervisor)\b"),
    (
        "individual",
        r"\b(engineer|developer|analyst|specialist|consultant|designer|scientist|accountant|"
        r"representative|executive|coordinator|administrator|architect|officer|marketer|"
        r"senior|sr\.?|staff)\b",
    ),
)
_COMPILED: Final = tuple((level, re.compile(p, re.IGNORECASE)) for level, p in _PATTERNS)


def seniority(title: object) -> str:
    """The seniority level a title names, or "unknown" when it is missing or names none."""
    if not isinstance(title, str):
        return UNKNOWN
    return _level(title)


@lru_cache(maxsize=65_536)  # live requests repeat titles: each distinct one is parsed once
def _level(title: str) -> str:
    if not title.strip():
        return UNKNOWN
    for level, pattern in _COMPILED:
        if pattern.search(title):
            return level
    return UNKNOWN


def seniority_many(titles: Sequence[object] | np.ndarray) -> np.ndarray:
    """`seniority` for many titles, parsing each distinct title once."""
    if len(titles) <= 16:  # a request's few leads: straight through the cache
        return np.array([seniority(t) for t in titles], dtype=object)
    arr = np.asarray(titles, dtype=object)
    uniq, inverse = np.unique(np.where(_is_missing(arr), "", arr).astype(str), return_inverse=True)
    levels = np.array([seniority(t) for t in uniq], dtype=object)
    return levels[inverse]


def _is_missing(arr: np.ndarray) -> np.ndarray:
    return np.array([not isinstance(t, str) for t in arr], dtype=bool)
