"""Benchmark: the live feature build, `lead_features`, for one lead with 50 events and for 1,000 such leads.

The API's hot path builds a request's features this way (a request is a batch of its leads). Events are
random in type, page and time (seeded), in no particular order, timestamps as ISO strings as a request
sends them. Reports the best of many repeats in thread CPU time, so other work on a shared machine moves
the figures little; "event features only" times `events.event_features` on the same leads already turned
into arrays. No goal of its own: the live path must not get slower (API goals: `bench/api.py`).
Run: `python bench/live_features.py`.
"""

from __future__ import annotations

import random
import sys
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

EVENTS_PER_LEAD = 50


def _lead(rng: random.Random, i: int) -> dict[str, Any]:
    from leadscore.features import schema as S

    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 30))
    events = []
    for _ in range(EVENTS_PER_LEAD):
        kind = rng.choice(S.EVENT_TYPES)
        at = created + timedelta(minutes=rng.randint(0, 90 * 1440))
        events.append(
            {
                "type": kind,
                "timestamp": at.isoformat(),
                "page": rng.choice(S.PAGE_KINDS) if kind == "web_visit" else None,
            }
        )
    return {
        "lead_id": f"L{i}",
        "created_at": created.isoformat(),
        "attributes": {"source": "webinar", "industry": "software", "company_size": "51-200", "country": "DE",
                       "job_title": "VP Sales", "email_domain": "acme.com"},
        "events": events,
    }  # fmt: skip


def _best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=60, timer=time.thread_time)) / number * 1e6


def main() -> None:
    from leadscore.features.events import PAGE_CODE, TYPE_CODE, EventArrays, event_features
    from leadscore.features.live import lead_features, to_ms

    print(f"machine: {_util.machine()}")
    rng = random.Random(0)
    as_of = to_ms(datetime(2026, 3, 22, tzinfo=UTC))
    for n, number in ((1, 200), (1000, 2)):
        leads = [_lead(rng, i) for i in range(n)]
        moments = [as_of] * n
        evs = [e for lead in leads for e in lead["events"]]
        arrays = EventArrays(
            lead=np.repeat(np.arange(n, dtype=np.int64), EVENTS_PER_LEAD),
            ts_ms=np.array([to_ms(e["timestamp"]) for e in evs], dtype=np.int64),
            type_code=np.array([TYPE_CODE[e["type"]] for e in evs], dtype=np.int16),
            page_code=np.array([PAGE_CODE[e["page"]] for e in evs], dtype=np.int16),
        )
        rows, at = np.arange(n, dtype=np.int64), np.full(n, as_of, dtype=np.int64)
        lead_features(leads, moments)  # compile / load the kernels first
        whole = _best_us(lambda: lead_features(leads, moments), number)  # noqa: B023
        events_only = _best_us(lambda: event_features(arrays, rows, at), number)  # noqa: B023
        print(
            f"{n:>5,} lead(s) x {EVENTS_PER_LEAD} events: lead_features {whole:,.1f} us, "
            f"event features only {events_only:,.1f} us (best of 60 x {number}, thread CPU time)"
        )


if __name__ == "__main__":
    main()
