"""The scoring service: everything a worker serves with, typed, built once at start-up
(`ScoringService.build`)
and reached by routes through `deps.ServiceDep`.

`build` makes the parts that need no I/O (the engine connects on first use); `start` (the app's lifespan)
migrates the store, opens the score-log writer and the worker's model sync, loads the champion, starts the
rescorer and the webhook deliverer (when a URL is set); `stop` closes them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import mlflow
import sqlalchemy as sa
from leadscore.model.exploration import Exploration
from leadscore.serve import db
from leadscore.serve.admission import Admission
from leadscore.serve.auth import FailureLimiter
from leadscore.serve.metrics import Metrics
from leadscore.serve.model_holder import ModelHolder
from leadscore.serve.model_sync import ModelSync
from leadscore.serve.monitoring import MonitorCache
from leadscore.serve.rescore import Rescorer
from leadscore.serve.scoring import Batcher
from leadscore.serve.store import ScoreLogWriter, prune_outbox_all
from leadscore.serve.webhooks import PendingGauge, WebhookDeliverer

from leadscore.settings import Settings

log = logging.getLogger("leadscore.serve")


@dataclass(eq=False)
class ScoringService:
    settings: Settings
    keys: dict[str, str]  # API key -> role
    holder: ModelHolder
    exploration: Exploration
    metrics: Metrics
    admission: Admission
    auth_failures: FailureLimiter  # one per worker: the API and the sales page's sign-in share it
    engine: sa.Engine
    batcher: Batcher = field(init=False)
    monitor_cache: MonitorCache = field(init=False)
    score_log: ScoreLogWriter | None = None  # open between `start` and `stop`
    model_sync: ModelSync | None = (
        None  # None without `start` (an app without its lifespan: this process only)
    )
    webhooks: WebhookDeliverer | None = None  # between `start` and `stop`, when LEADSCORE_WEBHOOK_URL is set
    outbox_retention: asyncio.Task[None] | None = None  # between `start` and `stop`, when retention is on
    rescorer: Rescorer | None = None  # open between `start` and `stop`

    def __post_init__(self) -> None:
        self.batcher = Batcher(self)
        self.monitor_cache = MonitorCache(self)

    @classmethod
    def build(cls, settings: Settings) -> ScoringService:
        metrics = Metrics()
        return cls(
            settings=settings,
            keys=settings.keys(),
            holder=ModelHolder(settings.model_uri),
            exploration=settings.exploration(),
            metrics=metrics,
            admission=Admission(
                settings.max_inflight_requests,
                settings.max_inflight_body_bytes,
                settings.max_body_bytes,
                metrics,
            ),
            auth_failures=FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_seconds),
            engine=db.make_engine(settings.database_url),
        )

    async def start(self) -> asyncio.Task[None] | None:
        """Open the store and the score log, join the workers' model sync, load the champion; the sync's
        periodic task when it runs (`LEADSCORE_MODEL_SYNC_SECONDS` > 0), for `stop` to cancel."""
        settings = self.settings
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        db.migrate(settings.database_url)
        score_log = self.score_log = ScoreLogWriter(
            db.make_engine(settings.database_url, synchronous="NORMAL"),
            retention_days=settings.score_log_retention_days,
            max_bytes=settings.score_log_queue_bytes,
            on_drop=self.metrics.score_log_dropped.inc,
            on_events=self.events_written,
        )
        self.metrics.score_log_queued.set_function(lambda: score_log.queued_bytes)
        sync = self.model_sync = ModelSync(
            self.holder, self.engine, settings.reload_interval_seconds, settings.model_sync_seconds
        )
        await asyncio.to_thread(sync.start)
        outcome = await asyncio.to_thread(self.holder.reload)
        (log.info if self.holder.model is not None else log.warning)("model: %s", outcome.message)
        await asyncio.to_thread(sync.report_now)
        if settings.webhook_url:
            self.metrics.webhook_pending.set_function(PendingGauge(self.engine))
            self.webhooks = WebhookDeliverer(self.engine, settings, self.metrics)
            self.webhooks.start()
        else:
            # pull only: every event stays pending for good, so a pending count would only grow
            self.metrics.registry.unregister(self.metrics.webhook_pending)
            log.info(
                "webhooks: off (no LEADSCORE_WEBHOOK_URL); handoff events are listed by GET /v1/handoffs"
            )
        if settings.score_log_retention_days > 0:
            self.outbox_retention = asyncio.create_task(self._prune_outbox())
        self.rescorer = Rescorer(self)
        self.rescorer.start()
        if (
            settings.exploration_share > 0
        ):  # the seed decides which leads are drawn: logged so a run can be redone
            log.info(
                "exploration: %.3g of the leads below the handoff threshold are handed over anyway "
                "(LEADSCORE_EXPLORATION_SHARE), drawn with seed %d (LEADSCORE_EXPLORATION_SEED)",
                settings.exploration_share,
                settings.exploration_seed,
            )
        else:
            log.info("exploration: off (LEADSCORE_EXPLORATION_SHARE=0; seed %d)", settings.exploration_seed)
        if not self.keys:
            log.warning("no API keys configured (LEADSCORE_API_KEYS): every endpoint but health answers 401")
        return asyncio.create_task(sync.run()) if settings.model_sync_seconds > 0 else None

    def events_written(self, _n: int) -> None:
        """Handoff events were committed (by the score-log writer, the rescorer): deliver them now, not at
        the deliverer's next poll."""
        if self.webhooks is not None:
            self.webhooks.wake()

    async def _prune_outbox(self, every: float = 600.0) -> None:
        """The outbox's retention (`store.prune_outbox_all`): right after the start, then every `every` s."""
        settings = self.settings
        while True:
            try:
                n = await asyncio.to_thread(
                    prune_outbox_all,
                    self.engine,
                    settings.score_log_retention_days,
                    settings.webhook_max_age_hours,
                )
                if n:
                    log.info(
                        "outbox retention: deleted %d handoff events older than %g days",
                        n,
                        settings.score_log_retention_days,
                    )
            except Exception:  # noqa: BLE001 - never let retention stop: try again at the next check
                log.exception("could not delete old handoff events")
            await asyncio.sleep(every)

    def rescore_soon(self) -> None:
        """Leads were queued for a rescore by this worker (committed): its rescorer looks now."""
        if self.rescorer is not None:
            self.rescorer.wake()

    def stop(self, task: asyncio.Task[None] | None) -> None:
        if task:
            task.cancel()
        if self.outbox_retention is not None:
            self.outbox_retention.cancel()
        if self.webhooks is not None:  # before the engine goes: the tries in flight record their outcome
            self.webhooks.stop()
        if self.rescorer is not None:  # finishes its batch; what is still queued waits for the next start
            self.rescorer.close()
        if self.model_sync is not None:
            with contextlib.suppress(Exception):  # the store may be gone: the report then just ages out
                self.model_sync.leave()
        if self.score_log is not None:
            self.score_log.close()
            self.score_log.engine.dispose()
        self.engine.dispose()
