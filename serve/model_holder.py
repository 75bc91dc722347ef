"""The model the service scores with, and its atomic replacement by a new champion.

Requests take a reference to the current `ScoringModel` once and finish on it; a reload builds and smoke-
tests the new model aside and swaps the reference in one assignment, so no request sees half a model and
none fails during a swap. A version that cannot load or fails its smoke score is refused: the old one keeps
serving, and `status()` (shown by /readyz) says why.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass

from leadscore.model import registry
from leadscore.model.scoring import ScoringModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    changed: bool
    version: str | None
    message: str
    refused: bool = False


class ModelHolder:
    def __init__(self, uri: str):
        self.uri = uri
        self.model: ScoringModel | None = None
        self.last_error: str | None = None
        self.refused: str | None = None  # the version last refused, not retried by periodic checks
        self._lock = threading.Lock()

    def _target_version(self) -> str | None:
        if self.uri.startswith("models:/") and "@" in self.uri:
            name, _, alias = self.uri.removeprefix("models:/").partition("@")
            return registry.alias_version(alias, name)
        return self.uri

    def reload(self, force: bool = False) -> ReloadOutcome:
        """Load the model `uri` points to now, if it differs from the one serving.

        A version refused once is not tried again by periodic checks (`force=False`), only by an explicit
        reload (`force=True`, POST /v1/admin/reload), so a broken champion does not fill the log.
        """
        with self._lock:
            try:
                target = self._target_version()
            except Exception as e:  # noqa: BLE001 - registry unreachable: keep serving what we have
                self.last_error = f"cannot reach the model registry: {type(e).__name__}: {str(e)[:300]}"
                log.warning(self.last_error)
                return ReloadOutcome(False, self.version, self.last_error)
            if target is None:
                self.last_error = f"no model at {self.uri}: train one (leadscore train) or promote a version"
                return ReloadOutcome(False, self.version, self.last_error)
            if self.model is not None and target == self.version:
                self.last_error = None
                return ReloadOutcome(False, self.version, "already serving this version")
            if target == self.refused and not force:
                return ReloadOutcome(False, self.version, self.last_error or f"version {target} was refused")
            try:
                candidate = registry.load_scoring_model(
                    self.uri
                    if "@" not in self.uri
                    else f"models:/{self.uri.removeprefix('models:/').partition('@')[0]}/{target}"
                )
                candidate.version = target if "@" in self.uri else candidate.version
                candidate.smoke_test()
            except Exception as e:  # noqa: BLE001 - any failure refuses the candidate
                self.refused = target
                kept = f"; still serving version {self.version}" if self.model is not None else ""
                self.last_error = f"refused model version {target}: {type(e).__name__}: {str(e)[:500]}{kept}"
                log.error(self.last_error)
                return ReloadOutcome(False, self.version, self.last_error, refused=True)
            previous = self.version
            self.model = candidate  # the atomic swap
            self.last_error = None
            self.refused = None
            _settle_heap()
            log.info("serving model %s version %s (was %s)", candidate.name, candidate.version, previous)
            return ReloadOutcome(True, candidate.version, f"now serving version {candidate.version}")

    @property
    def version(self) -> str | None:
        return self.model.version if self.model else None


def _settle_heap() -> None:
    """Move everything alive now (MLflow, scikit-learn, the model: some 400,000 objects) out of the
    garbage collector's sight with `gc.freeze`. Otherwise each full collection walks all of them, ~0.2 s
    holding the GIL, every few thousand requests: the slowest of our response times. Before freezing, the
    frozen objects are given back and collected, so a replaced model's cyclic garbage is freed: one full
    collection (~0.2 s, a pause for the requests of that moment) per model load, not one every few seconds."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
