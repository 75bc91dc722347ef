"""One `Settings` for the whole product, read from environment variables only.

Every variable is prefixed `LEADSCORE_`, except MLflow's own `MLFLOW_TRACKING_URI`, honoured as is. No `.env`
file is read: a file in whatever directory the service starts from must not be able to change its keys or
its database (docs/security.md).
"""

from __future__ import annotations

import os
from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROLES = ("scorer", "sales", "admin")


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting's message never repeats its value (keys, secrets, a URL's
    # credentials)
    model_config = SettingsConfigDict(
        env_prefix="LEADSCORE_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    database_url: str = "sqlite:///leadscore.db"
    api_keys: SecretStr = SecretStr("")  # comma-separated role:key pairs
    model_uri: str = "models:/leadscore@champion"
    mlflow_tracking_uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    # how often each worker asks the registry which version the alias names (one lookup: ~6 ms, 2 ms of CPU
    # on SQLite MLflow: 0.2 % of a core at 1 s), so `leadscore promote`/`rollback` reach every worker within
    # seconds; 0 = never
    reload_interval_seconds: float = 1.0
    model_sync_seconds: float = (
        1.0  # how often each worker reads the reload generation from the store (~0.1 ms)
    )
    reload_wait_seconds: float = 10.0  # POST /v1/admin/reload waits this long for every live worker to switch
    max_inflight_requests: int = 256  # per worker; more at once are answered 503 with Retry-After
    max_inflight_body_bytes: int = 8_000_000  # per worker: request bodies being worked on (by Content-Length)
    max_connections: int = 2048  # per worker (uvicorn limit_concurrency): past it uvicorn's own plain 503
    score_log_queue_bytes: int = (
        64_000_000  # per worker: score-log rows waiting for the database; then dropped
    )
    max_body_bytes: int = 5_000_000
    max_events_per_lead: int = 5000
    score_log_retention_days: float = Field(180, ge=0)  # score-log rows older than this are deleted; 0 = keep
    session_secret: SecretStr = SecretStr(
        ""
    )  # signs the sales page's session cookie; derived from keys if empty
    secure_cookies: bool = False  # set true behind HTTPS
    session_max_age_seconds: int = Field(
        12 * 3600, ge=60, le=30 * 86400
    )  # a sales-page session, from sign-in
    # Failed key checks (API and sales-page sign-in) per client address and worker: after `auth_failure_limit`
    # failures within `auth_failure_window_seconds` the address gets 429 until the oldest leaves the window.
    auth_failure_limit: int = Field(20, ge=0)  # 0 = no limit
    auth_failure_window_seconds: float = Field(300.0, gt=0, le=86400)
    # Monitoring (`leadscore monitor`, GET /v1/monitoring, docs/monitoring.md): the recent window, and the
    # thresholds of each check's status. A check warns or alerts only beyond what sampling noise alone gives.
    monitor_window_days: float = Field(30.0, gt=0, le=3650)
    monitor_psi_warn: float = Field(0.1, gt=0)  # PSI of a feature, the score or the grade mix vs training
    monitor_psi_alert: float = Field(0.25, gt=0)
    monitor_ece_warn: float = Field(0.03, gt=0)  # ECE on the leads whose outcome is now known
    monitor_ece_alert: float = Field(0.06, gt=0)
    # |observed - predicted| qualification rate, relative to the predicted rate
    monitor_rate_warn: float = Field(0.25, gt=0)
    monitor_rate_alert: float = Field(0.5, gt=0)
    monitor_min_labeled: int = Field(200, ge=1)  # fewer leads with a known outcome: "not enough data"
    monitor_min_scores: int = Field(200, ge=1)  # fewer scores in the window: drift "not enough data"
    monitor_coverage_warn: float = Field(0.5, ge=0, le=1)  # handed-over leads due a verdict that have one
    monitor_max_rows: int = Field(
        50_000, ge=1000
    )  # newest score-log rows read per check (docs/monitoring.md: cost)
    monitor_cache_seconds: float = Field(300.0, ge=0)  # the service recomputes at most this often
    # the service refreshes the report for /metrics and the sales page in a background thread; off: a busy
    # service runs `leadscore monitor` on a schedule instead (docs/monitoring.md, "In the service")
    monitor_refresh: bool = True
    # Exploration (docs/models.md, "Exploration and inverse-propensity weights"): this share of the leads
    # scored below the handoff threshold is handed over anyway, drawn per lead from a hash of the seed and the
    # lead id (rescoring never re-rolls it), so their verdicts show what the model misses. 0.02-0.05 is
    # recommended; more than 0.5 would be a second policy, not a correction of the first.
    exploration_share: float = Field(0.0, ge=0.0, le=0.5)
    exploration_seed: int = 0  # logged at start-up; changing it draws a different set of leads
    # Handoff events (docs/webhooks.md): each is POSTed to this URL, signed with the secret; none = no
    # delivery (the events are still written and listed by GET /v1/handoffs)
    webhook_url: str | None = None
    webhook_secret: SecretStr = SecretStr("")  # the HMAC-SHA256 key of X-Leadscore-Signature; never logged
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=60)  # connect, send and wait for the status line
    webhook_max_attempts: int = Field(20, ge=1, le=100)  # then the event is dead (GET /v1/admin/webhooks)
    webhook_backoff_seconds: float = Field(2.0, gt=0, le=3600)  # wait after the first failure; doubles
    webhook_backoff_max_seconds: float = Field(3600.0, gt=0, le=86400)  # the longest wait between tries
    webhook_workers: int = Field(4, ge=1, le=32)  # per service worker: deliveries in flight at once
    # an event first tried later than this after it was written (the service was down, the URL was set
    # later) is dead, not sent: a receiver acting on a days-old handoff would call a lead gone cold
    webhook_max_age_hours: float = Field(72.0, gt=0)
    # Rescoring (docs/retraining.md, "Fresh scores"): when a new champion is served, the leads with an event
    # in the last `rescore_active_days` days are rescored in the background at most `rescore_rate` leads a
    # second across the service's workers (200/s: 100,000 leads in about 8 minutes for ~5 % of one core);
    # 0 = no rescore on a new champion (run `leadscore rescore` instead). Leads with new activity are
    # rescored at once whatever the rate.
    rescore_rate: float = Field(200.0, ge=0)
    # false: PUT /v1/leads and POST /v1/events store what they are sent and rescore nothing (scores then
    # come only from POST /v1/score and `leadscore rescore`, e.g. when another system asks for every score)
    rescore_on_activity: bool = True
    rescore_active_days: float = Field(90.0, gt=0, le=3650)
    log_level: str = "INFO"

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, v: SecretStr) -> SecretStr:
        parse_keys(v.get_secret_value())
        return v

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # the value itself is not repeated: a URL may carry credentials
            raise ValueError(
                "LEADSCORE_WEBHOOK_URL must be an http:// or https:// URL with a host "
                f"(got a {parts.scheme + ':' if parts.scheme else 'scheme-less'} URL)"
            )
        if any(c <= " " or c == "\x7f" for c in v.strip()):
            raise ValueError(
                "LEADSCORE_WEBHOOK_URL must not contain spaces or control characters (percent-encode them)"
            )
        try:
            port = parts.port  # a port that is not a number from 0 to 65535 raises
        except ValueError:
            port = 0
        if port == 0 and parts.netloc.rpartition("@")[2].rpartition("]")[2].count(":"):
            raise ValueError("LEADSCORE_WEBHOOK_URL has a port that is not a number from 1 to 65535")
        return v.strip()

    @model_validator(mode="after")
    def _check_webhook_secret(self) -> Settings:
        if self.webhook_url and len(self.webhook_secret.get_secret_value()) < 16:
            raise ValueError(
                "LEADSCORE_WEBHOOK_SECRET must be set (at least 16 characters) when LEADSCORE_WEBHOOK_URL "
                "is: receivers verify every event's X-Leadscore-Signature with it"
            )
        if self.webhook_backoff_max_seconds < self.webhook_backoff_seconds:
            raise ValueError(
                "LEADSCORE_WEBHOOK_BACKOFF_MAX_SECONDS must be at least LEADSCORE_WEBHOOK_BACKOFF_SECONDS"
            )
        return self

    def exploration(self):
        """The exploration in force (`leadscore.model.exploration.Exploration`)."""
        from leadscore.model.exploration import Exploration

        return Exploration(self.exploration_share, self.exploration_seed)

    def keys(self) -> dict[str, str]:
        """key -> role."""
        return parse_keys(self.api_keys.get_secret_value())


def parse_keys(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, pair in enumerate(p.strip() for p in text.split(",") if p.strip()):
        role, sep, key = pair.partition(":")
        if not sep or role not in ROLES or len(key) < 8:
            raise ValueError(
                f"LEADSCORE_API_KEYS entry {i + 1} must be role:key with role in {ROLES} and a key "
                "of at least 8 characters"
            )
        out[key] = role
    return out


@lru_cache
def get_settings() -> Settings:
    return Settings()
