"""`leadscore retrain`: one run that a scheduler can start — the data (the service's store, or a CRM export
with the store's feedback merged), a challenger trained like the champion, the gate, registration and
promotion.

Safe to run from any scheduler:

- **one at a time**: the run holds the `retrain` job lock in the store (`serve/locks.py`); a second run
  stops at once with `LockHeld` naming the holder;
- **idempotent**: a version already trained on the same data (fingerprint SHA-256) with the same settings
  (`tracking.config_sha256`, and the same family choice) is found by its tags and nothing is trained;
- **all or nothing**: the gate is decided before registering (`tracking.track`), a failed registration
  leaves no version and moves no alias, and any error before it registers nothing.

No CLI code here: `leadscore/cli/retrain.py` prints and maps the outcome to exit codes. It lives beside the
CLI, not in `model/`: it joins the service's store and the model registry, and `model` imports no `serve`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient

from leadscore.features import schema as S
from leadscore.features.feedback import FOLLOW_UPS, VERDICTS, with_feedback
from leadscore.features.loading import Dataset, load_dataset
from leadscore.model import registry, run_metadata, tracking
from leadscore.model.gate import GateDecision
from leadscore.model.train import ModelChoice, TrainConfig, train
from leadscore.model.training_data import NotEnoughData
from leadscore.serve import db, locks, store
from leadscore.serve.export import store_dataset

log = logging.getLogger(__name__)
LOCK_NAME = "retrain"
Status = Literal["promoted", "kept", "unchanged"]
T = TypeVar("T")


class RetrainError(RuntimeError):
    """The run cannot go on (no store, a champion that cannot be read, ...); the message says why."""


@dataclass(frozen=True)
class RetrainOptions:
    database_url: str
    export: Path | None = None  # a CRM export directory; None: the store is the data
    model: ModelChoice | None = (
        None  # auto | scorecard | boosted; None: the champion's family (auto with no champion)
    )
    as_of: datetime | None = None  # the store as it was then (default: now); not with `export`
    seed: int = 0
    stale_lock_seconds: float = locks.STALE_AFTER_SECONDS
    model_name: str = registry.MODEL_NAME


@dataclass
class RetrainOutcome:
    status: Status
    version: str | None  # the new version, or the existing one that has this data (status "unchanged")
    champion_before: str | None
    decision: GateDecision | None = None
    run_id: str | None = None
    config: TrainConfig | None = None
    fingerprint: dict = field(default_factory=dict)
    feedback: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    family: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()


def shown_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<not a database URL>"


def open_store(url: str) -> sa.Engine:
    """The service's store at `url`, brought to the newest schema (the job lock's table); it must exist."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise RetrainError(f"--database-url: not a database URL: {url!r}") from None
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        raise RetrainError(
            f"no store at {shown_url(url)}: the file does not exist (start the service once, or "
            "pass --database-url / LEADSCORE_DATABASE_URL)"
        )
    try:
        db.migrate(url)
        return db.make_engine(url)
    except ValueError as e:
        raise RetrainError(f"--database-url: {e}") from None
    except sa.exc.SQLAlchemyError as e:
        raise RetrainError(
            f"cannot open the store at {shown_url(url)}: {type(e).__name__}: "
            f"{str(getattr(e, 'orig', e))[:200]}"
        ) from None


def champion(model_name: str = registry.MODEL_NAME):
    """(version, ScoringModel) of the champion, or (None, None) when the registry has none."""
    version = registry.alias_version(registry.CHAMPION, model_name)
    if version is None:
        return None, None
    try:
        return version, registry.load_scoring_model(f"models:/{model_name}/{version}")
    except Exception as e:  # noqa: BLE001 - a bundle or MLflow error: the reason is what the user needs
        raise RetrainError(
            f"the champion (version {version}) cannot be loaded to read its qualified-lead "
            f"definition and family ({type(e).__name__}: {str(e)[:300]}); fix or roll it back, "
            "or promote a version by hand"
        ) from None


def challenger_config(champ, model: ModelChoice | None, seed: int = 0) -> TrainConfig:
    """Train like the champion: its qualified-lead definition, handoff policy and family (`model` overrides
    the family; `auto` lets training choose). Without a champion: the defaults, family `auto`."""
    if champ is None:
        return TrainConfig(model=model or "auto", seed=seed)
    return TrainConfig(
        definition=champ.definition,
        model=model or champ.family,
        policy=champ.policy.kind,
        policy_target=champ.policy.target,
        seed=seed,
    )


def feedback_counts(feedback: pd.DataFrame) -> dict:
    """What sales said, as counted in the run: verdict rows, won/lost rows, and leads with any feedback."""
    outcome = feedback[S.OUTCOME] if len(feedback) else pd.Series(dtype=object)
    counts = {
        "rows": len(feedback),
        "verdicts": int(outcome.isin(VERDICTS).sum()),
        **{o: int((outcome == o).sum()) for o in (*VERDICTS, *FOLLOW_UPS)},
        "leads": int(feedback[S.LEAD_ID].nunique()) if len(feedback) else 0,
    }
    return counts


def load_data(engine: sa.Engine, export: Path | None, as_of: datetime | None) -> tuple[Dataset, dict]:
    """The dataset to train on and the feedback counts: the store as of `as_of`, or the export with the
    store's feedback merged (`with_feedback`: feedback after the export's snapshot is left out and
    counted)."""
    feedback = store.feedback_frame(engine)
    if export is None:
        dataset = store_dataset(engine, as_of)
        if len(feedback):
            feedback = feedback[feedback[S.OUTCOME_AT] <= dataset.snapshot_at]
        return dataset, feedback_counts(feedback)
    dataset = load_dataset(export)  # DataError lists every problem
    if len(feedback):
        feedback = feedback[feedback[S.OUTCOME_AT] <= dataset.snapshot_at]
    return with_feedback(dataset, feedback), feedback_counts(feedback)


def check_data(dataset: Dataset) -> None:
    """Refuse, before any work, data that cannot train a model at all (training would fail less clearly)."""
    if len(dataset.leads) == 0:
        raise NotEnoughData(
            "the data holds no leads: nothing to train on (send leads with PUT /v1/leads, or pass --export)"
        )
    if len(dataset.outcomes) == 0:
        raise NotEnoughData(
            f"no outcomes for the {len(dataset.leads):,} leads: no lead has a verdict yet (sales "
            "give it with POST /v1/feedback or on the sales page)"
        )


def existing_version(fp: dict, config: TrainConfig, model_name: str = registry.MODEL_NAME) -> str | None:
    """The newest registered version trained on data with this fingerprint and these settings, if any.

    `auto` matches a version that `auto` trained; a family asked by name matches a version of that family
    (whether named or picked by `auto`), since training it again would give the same model."""
    found = MlflowClient().search_model_versions(  # [] when nothing is registered yet
        f"name = '{model_name}' and tags.{tracking.DATA_SHA256} = '{fp['sha256']}' "
        f"and tags.{tracking.CONFIG_SHA256} = '{tracking.config_sha256(config)}'"
    )
    same = [
        v
        for v in found
        if v.tags.get(tracking.MODEL_CHOICE) == config.model or v.tags.get(tracking.FAMILY) == config.model
    ]
    return str(max(int(v.version) for v in same)) if same else None


def retrain(options: RetrainOptions, progress: Callable[[str], None] | None = None) -> RetrainOutcome:
    """One retraining run (module docstring). Raises `RetrainError`, `locks.LockHeld`, `NotEnoughData`,
    `features.loading.DataError`, or what MLflow raises; in each case nothing is registered."""
    step = progress or (lambda msg: log.info(msg))
    if options.export is not None and options.as_of is not None:
        raise RetrainError(
            "--as-of applies to the store: an export is as of its own snapshot_at (the store's "
            "feedback merged into it stops there too)"
        )
    return locked(
        options.database_url,
        options.stale_lock_seconds,
        step,
        lambda engine: _locked_run(engine, options, step),
    )


def locked(
    database_url: str, stale_after: float, step: Callable[[str], None], run: Callable[[sa.Engine], T]
) -> T:
    """`run(engine)` on the store at `database_url` while holding the `retrain` job lock: one model-changing
    job at a time (retrain and recalibrate share it)."""
    step("opening the store")
    engine = open_store(database_url)
    try:
        with locks.JobLock(engine, LOCK_NAME, stale_after=stale_after) as lock:
            if lock.took_over:
                log.warning("took over the retrain lock of %s: its heartbeat stopped", lock.took_over)
            return run(engine)
    finally:
        engine.dispose()


def _locked_run(engine: sa.Engine, options: RetrainOptions, step: Callable[[str], None]) -> RetrainOutcome:
    step("reading the champion")
    champ_version, champ = champion(options.model_name)
    config = challenger_config(champ, options.model, options.seed)
    step("reading the export and the store's feedback" if options.export else "reading the store")
    dataset, counts = load_data(engine, options.export, options.as_of)
    check_data(dataset)
    fp = run_metadata.fingerprint(dataset)
    common = {
        "champion_before": champ_version,
        "config": config,
        "fingerprint": fp,
        "feedback": counts,
        "notes": dataset.notes,
    }
    step("looking for a version trained on this data")
    have = existing_version(fp, config, options.model_name)
    if have is not None:
        return RetrainOutcome("unchanged", have, **common)
    result = train(dataset, config, progress=step)
    step("gating against the champion, logging to MLflow and registering")
    source = "export" if options.export else "store"
    params = {
        "retrain.source": source,
        "retrain.store": shown_url(options.database_url)[:250],
        "retrain.as_of": str(dataset.snapshot_at),
        "retrain.champion_before": champ_version or "none",
    }
    if options.export:
        params["retrain.export"] = str(options.export)[:250]
    tracked = tracking.track(
        result,
        dataset,
        config,
        holdout_values=result.holdout_values,
        leakage=result.leakage,
        extra_metrics={"feedback": counts},
        params=params,
        tags={"leadscore.retrain": source},
        data_source=str(options.export) if options.export else store_source(options.database_url),
        model_name=options.model_name,
    )
    decision = tracked.decision
    if decision is None:  # track() gates every registered version; None would mean nothing was registered
        raise RetrainError("the new version was registered without a gate decision")
    return RetrainOutcome(
        "promoted" if decision.promote else "kept",
        tracked.version,
        decision=decision,
        run_id=tracked.run_id,
        metrics=result.metrics,
        family=result.model.family,
        warnings=list(result.warnings),
        **common,
    )


def store_source(url: str) -> str:
    """The data source named in the run: a SQLite store's file (a dataset source MLflow can point to);
    a server database has no file, and is named by the `retrain.store` param instead."""
    parsed = sa.engine.make_url(url)
    return parsed.database if parsed.get_backend_name() == "sqlite" and parsed.database else ""
