"""Job-title templates per seniority level and the keyword parser that recovers the level."""

from __future__ import annotations

import re

DEPARTMENTS = (
    "Marketing",
    "Sales",
    "Data",
    "Engineering",
    "Finance",
    "Operations",
    "Product",
    "IT",
    "Procurement",
    "Growth",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "executive": (
        "CEO",
        "CTO",
        "CFO",
        "CMO",
        "COO",
        "Chief {d} Officer",
        "Founder",
        "Co-Founder & CEO",
        "Owner",
    ),
    "vp_director": ("VP of {d}", "Vice President, {d}", "Head of {d}", "{d} Director", "Director of {d}"),
    "manager": ("{d} Manager", "Senior {d} Manager", "{d} Team Lead", "Manager, {d}"),
    "senior_ic": (
        "Senior Software Engineer",
        "Senior {d} Analyst",
        "Senior {d} Specialist",
        "Principal Engineer",
        "Staff Data Scientist",
    ),
    "ic": (
        "Software Engineer",
        "{d} Analyst",
        "{d} Specialist",
        "{d} Coordinator",
        "Data Scientist",
        "Account Executive",
    ),
    "intern": ("{d} Intern", "Intern", "Trainee"),
    "student": ("Student", "MBA Student", "PhD Candidate", "Graduate Student"),
}


_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("student", re.compile(r"\bstudent\b|\bphd\b", re.IGNORECASE)),
    ("intern", re.compile(r"\bintern\b|\btrainee\b", re.IGNORECASE)),
    ("vp_director", re.compile(r"\bvp\b|vice president|\bhead of\b|\bdirector\b", re.IGNORECASE)),
    ("executive", re.compile(r"\bchief\b|\bc[etfmoi]o\b|founder|\bowner\b|\bpresident\b", re.IGNORECASE)),
    ("manager", re.compile(r"\bmanager\b|\bteam lead\b", re.IGNORECASE)),
    ("senior_ic", re.compile(r"\bsenior\b|\bprincipal\b|\bstaff\b", re.IGNORECASE)),
)


def seniority_from_title(title: str | None) -> str | None:
    """Seniority level from a free-text job title (None when the title is missing)."""
    if title is None or not isinstance(title, str) or not title.strip():
        return None
    for level, pat in _RULES:
        if pat.search(title):
            return level
    return "ic"
