"""The service's monitoring report, cached per worker so nothing a scraper or a person waits on computes
it (see `MonitorCache`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from leadscore.serve.monitoring.report import monitor

from leadscore.settings import Settings

if TYPE_CHECKING:
    from leadscore.model.scoring import ScoringModel

log = logging.getLogger("leadscore.serve")


class _Holder(Protocol):
    @property
    def model(self) -> ScoringModel | None: ...


class Monitored(Protocol):
    """What the cache reads of the service: its store, its settings and the model it serves."""

    @property
    def engine(self) -> sa.Engine: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def holder(self) -> _Holder: ...


Report = dict[str, Any]


class MonitorCache:
    """The service's monitoring report, per worker. Computing it is Python work of seconds on a large store
    (docs/monitoring.md, "In the service"), so nothing that a scraper or a person waits on computes it:

    - `peek` (/metrics, the sales page) never waits: it returns the last report of the model being served,
      even when older than `settings.monitor_cache_seconds` (stale-while-revalidate), and when it is stale or
      missing starts a refresh in one background thread (at most one per worker). Before the first report
      exists it returns None ("computing"): the gauges and the page's line are simply absent.
    - `get` (GET /v1/monitoring, called in the threadpool) returns a fresh report, computing it in the
      caller's thread when needed; one computation at a time, a concurrent caller waits and reuses it.

    `settings.monitor_refresh` off: no background refresh (a busy service runs `leadscore monitor` on a
    schedule instead); `peek` then returns what the last GET /v1/monitoring computed, if anything.
    The scoring path never computes anything."""

    def __init__(
        self,
        state: Monitored,
        compute: Callable[[sa.Engine, ScoringModel, Settings], Report] = monitor,
    ) -> None:
        self.state = state
        self._compute = compute
        self._running = threading.Lock()  # held while a report is computed: one at a time
        self._lock = threading.Lock()  # guards the fields below; never held while computing
        self._report: Report | None = None
        self._key: str | None = None
        self._at = float("-inf")
        self._tried_at = float(
            "-inf"
        )  # the last background attempt: a failing one is retried once per period
        self._refresher: threading.Thread | None = None

    def _fresh(self, model: ScoringModel) -> bool:
        return (
            self._report is not None
            and self._key == model.version
            and time.monotonic() - self._at <= self.state.settings.monitor_cache_seconds
        )

    def peek(self) -> Report | None:
        """The last report of the model being served, without waiting; None when no model is loaded or no
        report exists yet. Starts a background refresh when the report is stale or missing."""
        model = self.state.holder.model
        if model is None:
            return None
        settings = self.state.settings
        with self._lock:
            report = self._report if self._key == model.version else None
            if (
                settings.monitor_refresh
                and self._refresher is None
                and not self._fresh(model)
                and time.monotonic() - self._tried_at > settings.monitor_cache_seconds
            ):
                self._tried_at = time.monotonic()
                self._refresher = threading.Thread(
                    target=self._refresh, args=(model,), daemon=True, name="leadscore-monitoring"
                )
                self._refresher.start()
        return report

    def get(self) -> Report | None:
        """A fresh report of the model being served (computed here when stale); None when no model is
        loaded."""
        model = self.state.holder.model
        if model is None:
            return None
        with self._running:
            with self._lock:
                if self._fresh(model):
                    return self._report
            return self._run(model)

    def wait_refresh(self, timeout: float | None = None) -> None:
        """Wait for a running background refresh (tests, shutdown)."""
        t = self._refresher
        if t is not None:
            t.join(timeout)

    def _run(self, model: ScoringModel) -> Report:
        report = self._compute(self.state.engine, model, self.state.settings)
        with self._lock:
            self._report, self._key, self._at = report, model.version, time.monotonic()
        return report

    def _refresh(self, model: ScoringModel) -> None:
        try:
            with self._running:
                with self._lock:
                    fresh = self._fresh(model)
                if not fresh:  # a GET /v1/monitoring may have computed it meanwhile
                    self._run(model)
                    with self._lock:
                        self._tried_at = float("-inf")
        except Exception:  # noqa: BLE001 - the service keeps serving; the next period retries
            log.warning("monitoring: the report could not be computed", exc_info=True)
        finally:
            with self._lock:
                self._refresher = None
