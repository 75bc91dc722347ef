"""Benchmark: the learning loop, simulated on demo data whose truth is known (issue 12, docs/benchmarks.md).

Each monthly round, in three arms that each have their own store (SQLite) and registered model:

1. the month's new leads and their events (those before the scoring moment) go into the arm's store;
2. the arm's champion scores each lead at lead age `SCORE_AGE_DAYS` through the service's scoring path
   (`serve.scoring.score_request`, the service's score-log writer): the handoff decision is the model's;
3. simulated sales give a verdict only to the leads handed over (truth from the generator: its recorded
   outcome within the horizon, label noise included), as feedback in the store, dated when sales decided;
4. `leadscore.retrain.retrain` runs on the store (train like the champion, gate, register, promote);
5. the champion now in force is evaluated on the NEXT month's leads, all of them, labelled from the truth
   at the same scoring moment: ROC AUC and ECE.

Arms: (a) no exploration, no weighting; (b) exploration + inverse-propensity weights; (c) sales decide on
every lead (full labels: the ceiling). The design choices (scoring moment, what a lead without a verdict is,
what happens to the generator's own hand-over) are in docs/benchmarks.md, "The learning loop".

`--drift`: one arm with full labels on demo data whose qualification rate about doubles from round
`DRIFT_ROUND`'s month; each round also runs monitoring and, when its calibration check is not ok,
`leadscore.recalibrate.recalibrate`.

Run: `python bench/loop.py [--drift]` (defaults: 100,000 leads, 12 rounds, seed 0; `--leads`, `--rounds`,
`--arms`, `--out`). Runs in about 10 minutes (3.5 with `--drift`) on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402
from leadscore.features import schema as S  # noqa: E402
from leadscore.features.labels import QualifiedDefinition  # noqa: E402
from leadscore.features.loading import Dataset  # noqa: E402

SCORE_AGE_DAYS = 7
HORIZON_DAYS = 30
# The model is scored, trained and judged at one moment of a lead's life: the rows it learns from are the
# rows it is used on, and the yardstick (truth at that moment) is exact (issue 12, section 7).
DEFINITION = QualifiedDefinition(
    horizon_days=HORIZON_DAYS, ages_days=(SCORE_AGE_DAYS,), age_sampling="fixed", at_handoff=False
)
# What sales does once it has a lead: in the sim, sales gets a lead only through the model's policy, so the
# generator's own hand-over and the sales activity it drives are not part of what the service sees.
SALES_SIDE = ("handed_to_sales", "sales_call", "meeting")
START = "2024-07-01T00:00:00+00:00"  # 24 months of demo data: history, 12 rounds, their next months, horizon
DRIFT_ROUND = 7  # `--drift`: the qualification rate about doubles from this round's month on


@dataclass(frozen=True)
class Arm:
    key: str
    title: str
    exploration: float  # LEADSCORE_EXPLORATION_SHARE of the arm's service
    full_labels: bool  # sales decide on every lead, handed over or not
    monitored: bool = False  # each round: monitoring, and `recalibrate` when its calibration check is not ok


# Weighting needs no switch: training weights a lead by 1 / the propensity its score-log row recorded, so an
# arm without exploration (propensity 1 for every lead handed over) trains unweighted, and a lead with a
# verdict but no hand-over (the full-label arm) has weight 1.
ARMS = (
    Arm("a", "no exploration, no weighting", 0.0, False),
    Arm("b", "exploration 5 % + inverse-propensity weights", 0.05, False),
    Arm("c", "full labels (ceiling)", 0.0, True),
)
# The base-rate shift run: sales decide on every lead, so monitoring's calibration check (which counts a
# scored lead without a verdict as not qualified) measures the model, not the hand-over.
DRIFT_ARM = Arm(
    "d", "base-rate shift: full labels, monitoring, recalibrate on warn/alert", 0.0, True, monitored=True
)


@dataclass
class LoopConfig:
    leads: int = 100_000
    rounds: int = 12
    history_months: int = 6
    seed: int = 0
    family: str = "scorecard"
    out: Path = Path("/tmp/leadscore-bench/loop")
    arms: tuple[str, ...] = ("a", "b", "c")
    drift: bool = False  # the base-rate shift run (one monitored arm) instead of the three arms


@dataclass
class World:
    """The demo data as the simulation uses it: leads (without those the generator resolved before the
    scoring moment), the events the service sees, each lead's scoring moment, truth label and verdict time."""

    leads: pd.DataFrame
    events: pd.DataFrame
    months: list[pd.Timestamp]  # month starts, UTC
    scored_at: pd.Series  # lead_id -> scoring moment (created_at + SCORE_AGE_DAYS)
    label: pd.Series  # lead_id -> 0/1: a recorded `qualified` in (moment, moment + horizon]
    decided_at: pd.Series  # lead_id -> when sales would decide (the recorded verdict, else the horizon's end)
    dropped: int = 0
    features: pd.DataFrame = field(default_factory=pd.DataFrame)  # lead_id-indexed features at the moment

    def in_month(self, i: int) -> pd.DataFrame:
        lo, hi = self.months[i], self.months[i + 1]
        c = self.leads[S.CREATED_AT]
        return self.leads[(c >= lo) & (c < hi)]


def ensure_data(cfg: LoopConfig) -> Path:
    """The demo data of the run (cached beside `cfg.out`); with `cfg.drift`, the base-rate shift begins with
    round `DRIFT_ROUND`'s month."""
    from leadscore.demo.generate import generate
    from leadscore.demo.params import DemoParams, DriftParams, TimelineParams

    drift_at = drift_start(cfg)
    data = cfg.out.parent / (
        f"loop-data-{cfg.leads}-{cfg.seed}" + (f"-drift-{drift_at.date()}" if cfg.drift else "")
    )
    if (data / "dataset.json").exists():
        return data
    params = DemoParams(timeline=TimelineParams(start=START))
    if cfg.drift:
        params = DemoParams(timeline=params.timeline, drift=DriftParams(at=drift_at.isoformat()))
    tmp = data.with_name(data.name + ".tmp")
    print(f"generating {cfg.leads:,} demo leads from {START[:10]} into {data} ...", flush=True)
    generate(tmp, cfg.leads, seed=cfg.seed, params=params)
    tmp.rename(data)
    return data


def drift_start(cfg: LoopConfig) -> pd.Timestamp:
    return pd.Timestamp(START) + pd.DateOffset(months=cfg.history_months + DRIFT_ROUND - 1)


def build_world(data: Path) -> World:
    from leadscore.features.frames import feature_frame
    from leadscore.features.loading import load_dataset

    ds = load_dataset(data)
    leads = ds.leads.sort_values([S.CREATED_AT, S.LEAD_ID], ignore_index=True)
    moment = leads.set_index(S.LEAD_ID)[S.CREATED_AT] + pd.Timedelta(days=SCORE_AGE_DAYS)
    horizon = pd.Timedelta(days=HORIZON_DAYS)
    out = ds.outcomes.assign(moment=ds.outcomes[S.LEAD_ID].map(moment))
    verdicts = out[out[S.OUTCOME].isin(("qualified", "disqualified"))]
    # a lead the generator's sales resolved before the scoring moment has no place in a world where sales get
    # leads only from the model: left out (counted in the report)
    early = set(verdicts.loc[verdicts[S.OUTCOME_AT] <= verdicts["moment"], S.LEAD_ID])
    leads = leads[~leads[S.LEAD_ID].isin(early)].reset_index(drop=True)
    moment = moment.loc[leads[S.LEAD_ID]]
    window = verdicts[
        (verdicts[S.OUTCOME_AT] > verdicts["moment"])
        & (verdicts[S.OUTCOME_AT] <= verdicts["moment"] + horizon)
    ]
    first = window.sort_values(S.OUTCOME_AT, kind="stable").groupby(S.LEAD_ID).head(1).set_index(S.LEAD_ID)
    label = pd.Series(0, index=moment.index, dtype=np.int8)
    qualified = first.index[first[S.OUTCOME] == "qualified"].intersection(moment.index)
    label.loc[qualified] = 1
    decided_at = (moment + horizon).copy()
    known = first.index.intersection(moment.index)
    decided_at.loc[known] = first.loc[known, S.OUTCOME_AT]

    ev = (
        ds.events.drop_duplicates()
    )  # the generator's exact-duplicate trap: an application sends an event once
    ev = ev[ev[S.LEAD_ID].isin(moment.index) & ~ev[S.EVENT_TYPE].isin(SALES_SIDE)]
    ev = ev[ev[S.TIMESTAMP] < ev[S.LEAD_ID].map(moment)].reset_index(drop=True)

    start = leads[S.CREATED_AT].min().floor("D")
    months = list(pd.date_range(start, ds.snapshot_at, freq="MS", tz="UTC"))
    world = World(
        leads=leads,
        events=ev,
        months=months,
        scored_at=moment,
        label=label,
        decided_at=decided_at,
        dropped=len(early),
    )
    rows = pd.DataFrame({S.LEAD_ID: moment.index.to_numpy(dtype=object), "as_of": moment.to_numpy()})
    view = Dataset(leads=leads, events=ev, outcomes=ds.outcomes.iloc[:0], snapshot_at=ds.snapshot_at)
    world.features = feature_frame(view, rows).set_index(rows[S.LEAD_ID])
    return world


# --- one arm's store ---------------------------------------------------------------------------------------
def _now():
    from leadscore.serve import store

    return store.now()


def put_leads(engine, world: World, ids: list[str]) -> None:
    """The leads and their events into the store, as PUT /v1/leads and POST /v1/events would leave them."""
    import sqlalchemy as sa
    from leadscore.serve import db

    now = _now()
    part = world.leads[world.leads[S.LEAD_ID].isin(set(ids))]
    lead_rows = [
        {
            "lead_id": r[S.LEAD_ID],
            "created_at": r[S.CREATED_AT].to_pydatetime(),
            "updated_at": now,
            "attributes": {a: r[a] for a in S.LEAD_ATTRIBUTES if isinstance(r[a], str)},
        }
        for r in part.to_dict("records")
    ]
    ev = world.events[world.events[S.LEAD_ID].isin(set(ids))]
    event_rows = [
        {
            "lead_id": lid,
            "type": t,
            "timestamp": ts.to_pydatetime(),
            "page": p if isinstance(p, str) else None,
            "received_at": now,
        }
        for lid, t, ts, p in zip(ev[S.LEAD_ID], ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE], strict=False)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(db.leads), lead_rows)
        if event_rows:
            conn.execute(sa.insert(db.events), event_rows)


def give_verdicts(engine, world: World, handed: list[str], handed_at: dict | None) -> None:
    """Sales' verdicts on the `handed` leads as feedback (what POST /v1/feedback stores), dated when sales
    decided; with `handed_at`, the model's hand-overs as `handed_to_sales` events at the scoring moment."""
    import sqlalchemy as sa
    from leadscore.serve import db

    if not handed:
        return
    now = _now()
    label = world.label.loc[handed]
    at = world.decided_at.loc[handed]
    fb = [
        {
            "lead_id": lid,
            "outcome": "qualified" if y else "disqualified",
            "reason": None if y else "other",
            "note": None,
            "at": t.to_pydatetime(),
            "received_at": now,
            "source": "sim",
            "idempotency_key": f"sim:{lid}",
        }
        for lid, y, t in zip(handed, label.to_numpy(), at, strict=False)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(db.feedback), fb)
        if handed_at:
            conn.execute(
                sa.insert(db.events),
                [
                    {
                        "lead_id": lid,
                        "type": "handed_to_sales",
                        "timestamp": t,
                        "page": None,
                        "received_at": now,
                    }
                    for lid, t in handed_at.items()
                ],
            )


def score_month(state, world: World, ids: list[str]) -> list[dict]:
    """Score `ids` at their scoring moment through the service's scoring path (score log included)."""
    from leadscore.serve.schemas import ScoreRequest
    from leadscore.serve.scoring import score_request

    results = []
    for start in range(0, len(ids), 1000):
        part = ids[start : start + 1000]
        req = ScoreRequest(
            leads=[{"lead_id": lid, "as_of": world.scored_at[lid].to_pydatetime()} for lid in part]
        )
        results.extend(score_request(state, req)["results"])
    state.score_log.flush(everything=True)
    sim_clock(state.engine)
    return results


def sim_clock(engine) -> None:
    """The simulation runs months in minutes: the rows just logged are stamped `scored_at` = their `as_of`,
    the simulated moment they were scored at, as a service scoring in real time stamps them. Everything that
    reads the score log "as of T" (the selection the retrain weights by, monitoring's windows) then sees
    simulated time, not the wall clock of the run."""
    import sqlalchemy as sa
    from leadscore.serve import db

    with engine.begin() as conn:
        conn.execute(
            sa.update(db.score_log)
            .where(db.score_log.c.scored_at > db.score_log.c.as_of)
            .values(scored_at=db.score_log.c.as_of)
        )


def handed_over(results: list[dict]) -> list[str]:
    """The leads the policy in force sends to sales: over the threshold, or drawn for exploration."""
    return [r["lead_id"] for r in results if r["qualified"]]  # `qualified` includes the explored leads


# --- the loop ----------------------------------------------------------------------------------------------
def model_name(arm: Arm) -> str:
    return f"loop-{arm.key}"


def initial_champion(world: World, cfg: LoopConfig, arms: list[Arm]) -> dict:
    """The champion before round 1: trained on the history months with every lead's verdict (a labelled
    backfill), registered and promoted under each arm's model name."""
    from leadscore.features.feedback import with_feedback
    from leadscore.model import registry, tracking
    from leadscore.model.train import TrainConfig, train

    hist = world.leads[world.leads[S.CREATED_AT] < world.months[cfg.history_months]]
    ids = hist[S.LEAD_ID].tolist()
    snapshot = world.months[cfg.history_months] + pd.Timedelta(days=SCORE_AGE_DAYS + HORIZON_DAYS + 1)
    ds = Dataset(
        leads=hist.reset_index(drop=True),
        events=world.events[world.events[S.LEAD_ID].isin(set(ids))],
        outcomes=pd.DataFrame(
            {
                S.LEAD_ID: pd.Series(dtype=object),
                S.OUTCOME: pd.Series(dtype=object),
                S.OUTCOME_AT: pd.Series(dtype="datetime64[ms, UTC]"),
                S.REASON: pd.Series(dtype=object),
            }
        ),
        snapshot_at=snapshot,
    )
    fb = pd.DataFrame(
        {
            S.LEAD_ID: ids,
            S.OUTCOME: np.where(world.label.loc[ids] == 1, "qualified", "disqualified"),
            S.OUTCOME_AT: world.decided_at.loc[ids].to_numpy(),
        }
    )
    ds = with_feedback(ds, fb)
    config = TrainConfig(definition=DEFINITION, model=cfg.family, seed=cfg.seed)
    result = train(ds, config)
    for arm in arms:
        tracking.track(
            result,
            ds,
            config,
            holdout_values=result.holdout_values,
            model_name=model_name(arm),
            data_source="loop history",
            tags={"leadscore.loop.arm": arm.key},
        )
        assert registry.alias_version(registry.CHAMPION, model_name(arm)) is not None
    return {"leads": len(ids), "holdout": result.metrics}


def champion_model(arm: Arm):
    from leadscore.model import registry

    version = registry.alias_version(registry.CHAMPION, model_name(arm))
    return registry.load_scoring_model(f"models:/{model_name(arm)}/{version}")


def evaluate_model(world: World, model, month: int) -> tuple[dict, np.ndarray]:
    """ROC AUC and ECE of `model` on all of `month`'s leads at the scoring moment, labelled from the truth."""
    from leadscore.model import evaluate

    ids = world.in_month(month)[S.LEAD_ID]
    feats = world.features.loc[ids]
    p = model.explain({n: feats[n].to_numpy() for n in model.encoder.features}).probability
    y = world.label.loc[ids].to_numpy()
    return (
        {
            "version": model.version,
            "roc_auc": evaluate.metrics(p, y)["roc_auc"],
            "ece": evaluate.ece(p, y),
            "n": int(len(y)),
            "positive_rate": float(y.mean()),
            "mean_p": float(p.mean()),
        },
        p,
    )


def run_arm(world: World, arm: Arm, cfg: LoopConfig, work: Path, log_round) -> tuple[list[dict], dict]:
    """The arm's 12 rounds; (one row per round, round -> the next month's probabilities)."""
    from leadscore.model.training_data import NotEnoughData
    from leadscore.serve import db
    from leadscore.serve.store import ScoreLogWriter

    from leadscore.retrain import RetrainOptions, retrain
    from leadscore.settings import Settings

    url = f"sqlite:///{work / f'store-{arm.key}.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    settings = Settings(
        database_url=url,
        model_uri=f"models:/{model_name(arm)}@champion",
        exploration_share=arm.exploration,
        exploration_seed=cfg.seed,
    )
    # the parts of the service's state that `score_request` uses (serve/app.py builds the same)
    state = SimpleNamespace(
        settings=settings,
        engine=engine,
        metrics=None,
        holder=SimpleNamespace(model=None),
        exploration=settings.exploration(),
        score_log=ScoreLogWriter(engine, flush_seconds=3600),
    )
    hist_ids = world.leads.loc[
        world.leads[S.CREATED_AT] < world.months[cfg.history_months], S.LEAD_ID
    ].tolist()
    put_leads(engine, world, hist_ids)
    give_verdicts(engine, world, hist_ids, None)  # the backfill the first champion learned from
    rows, probabilities = [], {}
    try:
        for r in range(1, cfg.rounds + 1):
            t0 = clock = time.perf_counter()
            spent = {}

            def lap(name, spent=spent):  # seconds per step, to see where a round's time goes
                nonlocal clock
                now = time.perf_counter()
                spent[name] = round(now - clock, 1)
                clock = now

            m = cfg.history_months + r - 1
            ids = world.in_month(m)[S.LEAD_ID].tolist()
            put_leads(engine, world, ids)
            state.holder.model = served = champion_model(arm)
            results = score_month(state, world, ids)
            handed = handed_over(results)
            given = ids if arm.full_labels else handed
            give_verdicts(engine, world, given, {lid: world.scored_at[lid].to_pydatetime() for lid in handed})
            lap("score")
            # every verdict on the month's leads is in once the last one's horizon has passed
            as_of = world.months[m + 1] + pd.Timedelta(days=SCORE_AGE_DAYS + HORIZON_DAYS + 1)
            row = {
                "arm": arm.key,
                "round": r,
                "month": str(world.months[m].date())[:7],
                "leads": len(ids),
                "handed": len(handed),
                "explored": sum(1 for x in results if x["explored"]),
                "verdicts": len(given),
            }
            if arm.monitored:
                row.update(watch(engine, settings, served, world, m, as_of))
                lap("monitor")
            try:
                outcome = retrain(
                    RetrainOptions(
                        database_url=url,
                        as_of=as_of.to_pydatetime(),
                        seed=cfg.seed,
                        model_name=model_name(arm),
                    )
                )
                row.update(
                    retrain=outcome.status, why=(outcome.decision.reason if outcome.decision else "")[:200]
                )
            except NotEnoughData as e:
                row.update(retrain="not enough data", why=str(e)[:200])
            lap("retrain")
            if arm.monitored:
                before, _ = evaluate_model(world, champion_model(arm), m + 1)
                row["ece_before_recalibration"] = before["ece"]
                row.update(recalibrate_if_alert(url, world, m, as_of, arm, cfg, row))
                lap("recalibrate")
            metrics, probabilities[r] = evaluate_model(world, champion_model(arm), m + 1)
            lap("evaluate")
            row.update(metrics, seconds=round(time.perf_counter() - t0, 1), steps=spent)
            rows.append(row)
            log_round(row)
    finally:
        state.score_log.close()
        engine.dispose()
    return rows, probabilities


def monitor_window(world: World, m: int, as_of: pd.Timestamp) -> float:
    """Days of the monitoring window that hold exactly month m's scores: monitoring judges the scores whose
    horizon ended in the window, i.e. as_of in (now - window - horizon, now - horizon]."""
    first = world.months[m] + pd.Timedelta(days=SCORE_AGE_DAYS)
    return (as_of - pd.Timedelta(days=HORIZON_DAYS) - first) / pd.Timedelta(days=1) + 0.01


def watch(engine, settings, model, world: World, m: int, as_of: pd.Timestamp) -> dict:
    """The monitoring report of the champion that served month m, as of the moment its verdicts are in."""
    from leadscore.serve.monitoring import monitor

    report = monitor(
        engine, model, settings, now=as_of.to_pydatetime(), window_days=monitor_window(world, m, as_of)
    )
    cal = report["checks"]["calibration"]
    return {
        "monitor": report["status"],
        "calibration": cal["status"],
        "monitor_ece": cal.get("ece"),
        "predicted_rate": cal.get("predicted_rate"),
        "observed_rate": cal.get("observed_rate"),
        "monitor_reasons": "; ".join(report["reasons"])[:300],
    }


def recalibrate_if_alert(
    url: str, world: World, m: int, as_of: pd.Timestamp, arm: Arm, cfg: LoopConfig, row: dict
) -> dict:
    """`leadscore recalibrate` on the month just judged when monitoring's calibration check is not ok (warn or
    alert): recalibrate promotes only a version better calibrated beyond noise, so running it on a warning is
    safe, and a shift that starts mid-horizon first shows as a warning on the month it fully reaches."""
    from leadscore.model.training_data import NotEnoughData

    from leadscore.recalibrate import RecalibrateOptions, recalibrate

    if row["calibration"] not in ("warn", "alert"):
        return {"recalibrate": ""}
    window = int(np.ceil(monitor_window(world, m, as_of)))
    try:
        out = recalibrate(
            RecalibrateOptions(
                database_url=url,
                as_of=as_of.to_pydatetime(),
                window_days=window,
                seed=cfg.seed,
                model_name=model_name(arm),
            )
        )
        return {
            "recalibrate": out.status,
            "recalibrate_why": (out.decision.reason if out.decision else "")[:200],
        }
    except NotEnoughData as e:
        return {"recalibrate": "not enough data", "recalibrate_why": str(e)[:200]}


def plot(rows: list[dict], path: Path, drift: bool = False):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    df = pd.DataFrame(rows)
    for arm in (*ARMS, DRIFT_ARM):
        d = df[df["arm"] == arm.key]
        if len(d):
            label = f"({arm.key}) {arm.title}"
            axes[0].plot(d["round"], d["roc_auc"], "o-", label=label)
            axes[1].plot(d["round"], d["ece"], "o-", label=label)
    if drift and len(df):
        axes[1].plot(
            df["round"],
            df["ece_before_recalibration"],
            "x--",
            color="grey",
            label="retrained, not recalibrated",
        )
        for r, status in zip(df["round"], df["calibration"], strict=False):
            if status in ("warn", "alert"):
                axes[1].axvline(r, color="red" if status == "alert" else "orange", alpha=0.25, lw=6)
        # rounds right of the line are judged on leads the shift reaches: it starts within the horizon of the
        # month before its own
        for ax in axes:
            ax.axvline(DRIFT_ROUND - 2.5, color="black", ls=":", lw=1)
        axes[1].set_title("Calibration (red: alert, orange: warn; recalibrated)")
    axes[0].set(xlabel="round (month)", ylabel="ROC AUC on the next month's leads")
    axes[1].set(xlabel="round (month)", ylabel="ECE on the next month's leads")
    axes[0].set_title("Ranking")
    if not drift:
        axes[1].set_title("Calibration")
    axes[1].axhline(0.02, ls="--", color="grey", lw=1)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def table(rows: list[dict]) -> str:
    df = pd.DataFrame(rows)
    arms = sorted(df["arm"].unique())
    lines = [
        "| round | month | " + " | ".join(f"({a}) AUC | ({a}) ECE" for a in arms) + " |",
        "|---|---|" + "---|---|" * len(arms),
    ]
    for r, d in df.groupby("round"):
        cells = [f"{x['roc_auc']:.4f} | {x['ece']:.4f}" for a in arms for x in [d[d["arm"] == a].iloc[0]]]
        lines.append(f"| {r} | {d['month'].iloc[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def drift_table(rows: list[dict]) -> str:
    lines = [
        "| round | month | monitoring (calibration) | scores said / qualified | retrain | recalibrate "
        "| next month ECE before / after recalibration | AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        rates = (
            f"{x['predicted_rate']:.3f} / {x['observed_rate']:.3f}"
            if x.get("predicted_rate") is not None
            else ""
        )
        lines.append(
            f"| {x['round']} | {x['month']} | {x['monitor']} ({x['calibration']}) | {rates} | {x['retrain']} "
            f"| {x['recalibrate'] or '-'} | {x['ece_before_recalibration']:.4f} / {x['ece']:.4f} "
            f"| {x['roc_auc']:.4f} |"
        )
    return "\n".join(lines)


def goals(rows: list[dict], probabilities: dict, drift: bool) -> dict:
    """The issue's goals on the last round (and, for the shift, the rounds after it), with the paired
    bootstrap of the AUC differences on the last month's leads."""
    from leadscore.model import evaluate

    df = pd.DataFrame(rows)
    if drift:
        after = df[df["round"] >= DRIFT_ROUND - 1]
        alert = after.loc[after["calibration"] == "alert", "round"]
        first_alert = int(alert.min()) if len(alert) else None
        ece = df.set_index("round")["ece"]
        # each promoted recalibration: the next month's ECE, and the month after's (one round later)
        recal = {
            int(r): [float(ece.get(r)), float(ece.get(r + 1, np.nan))]
            for r in df.loc[df["recalibrate"] == "promoted", "round"]
        }
        return {
            "drift_round": DRIFT_ROUND,
            "first_alert_round": first_alert,
            "alert_within_one_round": first_alert is not None and first_alert <= DRIFT_ROUND + 1,
            "recalibrations": recal,
            "ece_restored_within_one_round": {r: min(v) <= 0.02 for r, v in recal.items()},
        }
    last = int(df["round"].max())
    out = {"round": last}
    y = None
    for arm in df["arm"].unique():
        out[f"{arm}.roc_auc"] = float(df.loc[(df["arm"] == arm) & (df["round"] == last), "roc_auc"].iloc[0])
    if {"a", "b", "c"} <= set(df["arm"]):
        out["c_minus_b"] = out["c.roc_auc"] - out["b.roc_auc"]
        out["c_minus_a"] = out["c.roc_auc"] - out["a.roc_auc"]
        y = probabilities["y"]
        for other in ("a", "b"):
            out[f"c_minus_{other}_bootstrap"] = evaluate.paired_bootstrap_auc(
                y, probabilities["c"][last], probabilities[other][last]
            )
        out["b_within_0.01_of_c"] = out["c_minus_b"] <= 0.01
        out["a_measurably_below_c"] = out["c_minus_a_bootstrap"]["low"] > 0
    return out


def run(cfg: LoopConfig) -> dict:
    import os
    import shutil

    import mlflow

    cfg.out.mkdir(parents=True, exist_ok=True)
    work = cfg.out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # what `retrain` reads (Settings)
    os.chdir(work)  # the MLflow experiment's artifacts go beside its database
    t0 = time.perf_counter()
    print(_util.machine(), flush=True)
    world = build_world(ensure_data(cfg))
    print(
        f"world: {len(world.leads):,} leads ({world.dropped:,} resolved before the scoring moment left out), "
        f"{len(world.events):,} events, {world.label.mean():.3f} positive; {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    arms = [DRIFT_ARM] if cfg.drift else [a for a in ARMS if a.key in cfg.arms]
    first = initial_champion(world, cfg, arms)
    print(
        f"initial champion on {first['leads']:,} history leads: "
        f"holdout ROC AUC {first['holdout']['roc_auc']:.4f}",
        flush=True,
    )

    def log_round(row):
        watched = (
            f"monitoring {row['monitor']} (calibration {row['calibration']}), "
            f"recalibrate {row['recalibrate'] or '-'}, "
            if "monitor" in row
            else ""
        )
        print(
            f"  ({row['arm']}) round {row['round']:2d} {row['month']}: "
            f"{row['handed']:5,} of {row['leads']:,} handed "
            f"({row['explored']} explored), {watched}retrain {row['retrain']}; next month ROC AUC "
            f"{row['roc_auc']:.4f} ECE {row['ece']:.4f}  [{row['seconds']:.0f} s: "
            + ", ".join(f"{k} {v:.0f}" for k, v in row["steps"].items())
            + "]",
            flush=True,
        )

    rows, probabilities = [], {}
    for arm in arms:
        arm_rows, probabilities[arm.key] = run_arm(world, arm, cfg, work, log_round)
        rows += arm_rows
    last_month = cfg.history_months + cfg.rounds
    probabilities["y"] = world.label.loc[world.in_month(last_month)[S.LEAD_ID]].to_numpy()
    fig = plot(rows, cfg.out / ("loop-drift.png" if cfg.drift else "loop.png"), cfg.drift)
    summary = {
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "initial": first,
        "rows": rows,
        "goals": goals(rows, probabilities, cfg.drift),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": _util.machine(),
    }
    mlflow.set_experiment("leadscore-loop-benchmark")
    with mlflow.start_run(run_name="learning loop" + (" (base-rate shift)" if cfg.drift else "")):
        mlflow.log_params({k: str(v) for k, v in asdict(cfg).items()})
        for row in rows:
            mlflow.log_metrics(
                {f"{row['arm']}.roc_auc": row["roc_auc"], f"{row['arm']}.ece": row["ece"]}, step=row["round"]
            )
        mlflow.log_figure(fig, "loop-drift.png" if cfg.drift else "loop.png")
        mlflow.log_dict(summary, "loop.json")
    (cfg.out / ("loop-drift.json" if cfg.drift else "loop.json")).write_text(
        json.dumps(summary, indent=1, default=str)
    )
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=LoopConfig.leads)
    ap.add_argument("--rounds", type=int, default=LoopConfig.rounds)
    ap.add_argument("--history-months", type=int, default=LoopConfig.history_months)
    ap.add_argument("--seed", type=int, default=LoopConfig.seed)
    ap.add_argument("--arms", default="abc", help="which of the arms a, b, c to run")
    ap.add_argument(
        "--drift", action="store_true", help="the base-rate shift run: monitoring and recalibrate"
    )
    ap.add_argument("--out", type=Path, default=LoopConfig.out)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", category=UserWarning
    )  # MLflow's schema hints, once per registered version
    cfg = LoopConfig(
        leads=a.leads,
        rounds=a.rounds,
        history_months=a.history_months,
        seed=a.seed,
        out=a.out.resolve(),
        arms=tuple(a.arms),
        drift=a.drift,
    )
    summary = run(cfg)
    print(drift_table(summary["rows"]) if cfg.drift else table(summary["rows"]))
    print(json.dumps(summary["goals"], indent=1, default=str))
    print(f"total {summary['seconds']:.0f} s; plot in {cfg.out}")


if __name__ == "__main__":
    main()
