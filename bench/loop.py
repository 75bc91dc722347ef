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

Run: `python bench/loop.py` (defaults: 150,000 leads, 12 rounds, seed 0; `--leads`, `--rounds`, `--out`).
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
DEFINITION = QualifiedDefinition(horizon_days=HORIZON_DAYS, ages_days=(SCORE_AGE_DAYS,), age_sampling="fixed",
                                 at_handoff=False)
# What sales does once it has a lead: in the sim, sales gets a lead only through the model's policy, so the
# generator's own hand-over and the sales activity it drives are not part of what the service sees.
SALES_SIDE = ("handed_to_sales", "sales_call", "meeting")
START = "2024-07-01T00:00:00+00:00"  # 24 months of demo data: history, 12 rounds, their next months, horizon


@dataclass(frozen=True)
class Arm:
    key: str
    title: str
    exploration: float  # LEADSCORE_EXPLORATION_SHARE of the arm's service
    full_labels: bool  # sales decide on every lead, handed over or not


# Weighting needs no switch: training weights a lead by 1 / the propensity its score-log row recorded, so an
# arm without exploration (propensity 1 for every lead handed over) trains unweighted, and a lead with a
# verdict but no hand-over (the full-label arm) has weight 1.
ARMS = (Arm("a", "no exploration, no weighting", 0.0, False),
        Arm("b", "exploration 5 % + inverse-propensity weights", 0.05, False),
        Arm("c", "full labels (ceiling)", 0.0, True))


@dataclass
class LoopConfig:
    leads: int = 150_000
    rounds: int = 12
    history_months: int = 6
    seed: int = 0
    family: str = "scorecard"
    out: Path = Path("/tmp/leadscore-bench/loop")
    arms: tuple[str, ...] = ("a", "b", "c")


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

    def month_of(self, ids) -> pd.Series:
        return self.leads.set_index(S.LEAD_ID).loc[ids, S.CREATED_AT]

    def in_month(self, i: int) -> pd.DataFrame:
        lo, hi = self.months[i], self.months[i + 1]
        c = self.leads[S.CREATED_AT]
        return self.leads[(c >= lo) & (c < hi)]


def ensure_data(cfg: LoopConfig) -> Path:
    from leadscore.demo.generate import generate
    from leadscore.demo.params import DemoParams, TimelineParams

    data = cfg.out.parent / f"loop-data-{cfg.leads}-{cfg.seed}"
    if (data / "dataset.json").exists():
        return data
    tmp = data.with_name(data.name + ".tmp")
    print(f"generating {cfg.leads:,} demo leads from {START[:10]} into {data} ...", flush=True)
    generate(tmp, cfg.leads, seed=cfg.seed, params=DemoParams(timeline=TimelineParams(start=START)))
    tmp.rename(data)
    return data


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
    window = verdicts[(verdicts[S.OUTCOME_AT] > verdicts["moment"]) & (verdicts[S.OUTCOME_AT] <= verdicts["moment"] + horizon)]
    first = window.sort_values(S.OUTCOME_AT, kind="stable").groupby(S.LEAD_ID).head(1).set_index(S.LEAD_ID)
    label = pd.Series(0, index=moment.index, dtype=np.int8)
    qualified = first.index[first[S.OUTCOME] == "qualified"].intersection(moment.index)
    label.loc[qualified] = 1
    decided_at = (moment + horizon).copy()
    known = first.index.intersection(moment.index)
    decided_at.loc[known] = first.loc[known, S.OUTCOME_AT]

    ev = ds.events.drop_duplicates()  # the generator's exact-duplicate trap: an application sends an event once
    ev = ev[ev[S.LEAD_ID].isin(moment.index) & ~ev[S.EVENT_TYPE].isin(SALES_SIDE)]
    ev = ev[ev[S.TIMESTAMP] < ev[S.LEAD_ID].map(moment)].reset_index(drop=True)

    start = leads[S.CREATED_AT].min().floor("D")
    months = list(pd.date_range(start, ds.snapshot_at, freq="MS", tz="UTC"))
    world = World(leads=leads, events=ev, months=months, scored_at=moment, label=label, decided_at=decided_at,
                  dropped=len(early))
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
    lead_rows = [dict(lead_id=r[S.LEAD_ID], created_at=r[S.CREATED_AT].to_pydatetime(), updated_at=now,
                      attributes={a: r[a] for a in S.LEAD_ATTRIBUTES if isinstance(r[a], str)})
                 for r in part.to_dict("records")]
    ev = world.events[world.events[S.LEAD_ID].isin(set(ids))]
    event_rows = [dict(lead_id=lid, type=t, timestamp=ts.to_pydatetime(), page=p if isinstance(p, str) else None,
                       received_at=now)
                  for lid, t, ts, p in zip(ev[S.LEAD_ID], ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE])]
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
    fb = [dict(lead_id=lid, outcome="qualified" if y else "disqualified", reason=None if y else "other", note=None,
               at=t.to_pydatetime(), received_at=now, source="sim", idempotency_key=f"sim:{lid}")
          for lid, y, t in zip(handed, label.to_numpy(), at)]
    with engine.begin() as conn:
        conn.execute(sa.insert(db.feedback), fb)
        if handed_at:
            conn.execute(sa.insert(db.events), [dict(lead_id=lid, type="handed_to_sales", timestamp=t, page=None,
                                                     received_at=now) for lid, t in handed_at.items()])


def score_month(state, world: World, ids: list[str]) -> list[dict]:
    """Score `ids` at their scoring moment through the service's scoring path (score log included)."""
    from leadscore.serve.schemas import ScoreRequest
    from leadscore.serve.scoring import score_request

    results = []
    for start in range(0, len(ids), 1000):
        part = ids[start:start + 1000]
        req = ScoreRequest(leads=[{"lead_id": lid, "as_of": world.scored_at[lid].to_pydatetime()} for lid in part])
        results.extend(score_request(state, req)["results"])
    state.score_log.flush(everything=True)
    sim_clock(state.engine)
    return results


def sim_clock(engine) -> None:
    """The simulation runs months in minutes: the rows just logged are stamped `scored_at` = their `as_of`, the
    simulated moment they were scored at, as a service scoring in real time stamps them. Everything that reads
    the score log "as of T" (the selection the retrain weights by, monitoring's windows) then sees simulated
    time, not the wall clock of the run."""
    import sqlalchemy as sa

    from leadscore.serve import db

    with engine.begin() as conn:
        conn.execute(sa.update(db.score_log).where(db.score_log.c.scored_at > db.score_log.c.as_of)
                     .values(scored_at=db.score_log.c.as_of))


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
    ds = Dataset(leads=hist.reset_index(drop=True), events=world.events[world.events[S.LEAD_ID].isin(set(ids))],
                 outcomes=pd.DataFrame({S.LEAD_ID: pd.Series(dtype=object), S.OUTCOME: pd.Series(dtype=object),
                                        S.OUTCOME_AT: pd.Series(dtype="datetime64[ms, UTC]"),
                                        S.REASON: pd.Series(dtype=object)}),
                 snapshot_at=snapshot)
    fb = pd.DataFrame({S.LEAD_ID: ids, S.OUTCOME: np.where(world.label.loc[ids] == 1, "qualified", "disqualified"),
                       S.OUTCOME_AT: world.decided_at.loc[ids].to_numpy()})
    ds = with_feedback(ds, fb)
    config = TrainConfig(definition=DEFINITION, model=cfg.family, seed=cfg.seed)
    result = train(ds, config)
    for arm in arms:
        tracking.track(result, ds, config, holdout_values=result.holdout_values, model_name=model_name(arm),
                       data_source="loop history", tags={"leadscore.loop.arm": arm.key})
        assert registry.alias_version(registry.CHAMPION, model_name(arm)) is not None
    return {"leads": len(ids), "holdout": result.metrics}


def evaluate_champion(world: World, arm: Arm, month: int) -> dict:
    from leadscore.model import evaluate, registry

    name = model_name(arm)
    version = registry.alias_version(registry.CHAMPION, name)
    model = registry.load_scoring_model(f"models:/{name}/{version}")
    ids = world.in_month(month)[S.LEAD_ID]
    feats = world.features.loc[ids]
    p = model.explain({n: feats[n].to_numpy() for n in model.encoder.features}).probability
    y = world.label.loc[ids].to_numpy()
    return {"version": version, "roc_auc": evaluate.metrics(p, y)["roc_auc"], "ece": evaluate.ece(p, y),
            "n": int(len(y)), "positive_rate": float(y.mean()), "mean_p": float(p.mean())}


def run_arm(world: World, arm: Arm, cfg: LoopConfig, work: Path, log_round) -> list[dict]:
    from leadscore.model.train import NotEnoughData
    from leadscore.retrain import RetrainOptions, retrain
    from leadscore.serve import db
    from leadscore.serve.store import ScoreLogWriter
    from leadscore.model import registry
    from leadscore.settings import Settings

    url = f"sqlite:///{work / f'store-{arm.key}.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    settings = Settings(database_url=url, model_uri=f"models:/{model_name(arm)}@champion",
                        exploration_share=arm.exploration, exploration_seed=cfg.seed)
    # the parts of the service's state that `score_request` uses (serve/app.py builds the same)
    state = SimpleNamespace(settings=settings, engine=engine, metrics=None, holder=SimpleNamespace(model=None),
                            exploration=settings.exploration(), score_log=ScoreLogWriter(engine, flush_seconds=3600))
    hist_ids = world.leads.loc[world.leads[S.CREATED_AT] < world.months[cfg.history_months], S.LEAD_ID].tolist()
    put_leads(engine, world, hist_ids)
    give_verdicts(engine, world, hist_ids, None)  # the backfill the first champion learned from
    rows = []
    try:
        for r in range(1, cfg.rounds + 1):
            t0 = time.perf_counter()
            m = cfg.history_months + r - 1
            ids = world.in_month(m)[S.LEAD_ID].tolist()
            put_leads(engine, world, ids)
            version = registry.alias_version(registry.CHAMPION, model_name(arm))
            model = registry.load_scoring_model(f"models:/{model_name(arm)}/{version}")
            state.holder.model = model
            results = score_month(state, world, ids)
            handed = handed_over(results)
            given = ids if arm.full_labels else handed
            give_verdicts(engine, world, given, {lid: world.scored_at[lid].to_pydatetime() for lid in handed})
            as_of = world.months[m + 1] + pd.Timedelta(days=SCORE_AGE_DAYS + HORIZON_DAYS + 1)
            try:
                outcome = retrain(RetrainOptions(database_url=url, as_of=as_of.to_pydatetime(), seed=cfg.seed,
                                                 model_name=model_name(arm)))
                status, why = outcome.status, (outcome.decision.reason if outcome.decision else "")
            except NotEnoughData as e:
                status, why = "not enough data", str(e)
            row = {"arm": arm.key, "round": r, "month": str(world.months[m].date())[:7], "leads": len(ids),
                   "handed": len(handed), "explored": sum(1 for x in results if x["explored"]),
                   "verdicts": len(given), "retrain": status, "why": why[:160],
                   **evaluate_champion(world, arm, m + 1), "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            log_round(row)
    finally:
        state.score_log.close()
        engine.dispose()
    return rows


def plot(rows: list[dict], path: Path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    df = pd.DataFrame(rows)
    for arm in ARMS:
        d = df[df["arm"] == arm.key]
        if len(d):
            axes[0].plot(d["round"], d["roc_auc"], "o-", label=f"({arm.key}) {arm.title}")
            axes[1].plot(d["round"], d["ece"], "o-", label=f"({arm.key}) {arm.title}")
    axes[0].set(xlabel="round (month)", ylabel="ROC AUC on the next month's leads", title="Ranking")
    axes[1].set(xlabel="round (month)", ylabel="ECE on the next month's leads", title="Calibration")
    axes[1].axhline(0.02, ls="--", color="grey", lw=1)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def table(rows: list[dict]) -> str:
    df = pd.DataFrame(rows)
    lines = ["| round | month | " + " | ".join(f"({a}) AUC | ({a}) ECE" for a in sorted(df["arm"].unique())) + " |",
             "|---|---|" + "---|---|" * df["arm"].nunique()]
    for r, d in df.groupby("round"):
        cells = []
        for a in sorted(df["arm"].unique()):
            x = d[d["arm"] == a].iloc[0]
            cells.append(f"{x['roc_auc']:.4f} | {x['ece']:.4f}")
        lines.append(f"| {r} | {d['month'].iloc[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(cfg: LoopConfig) -> dict:
    import mlflow

    cfg.out.mkdir(parents=True, exist_ok=True)
    work = cfg.out / "work"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    import os

    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.chdir(work)  # the MLflow experiment's artifacts go beside its database
    t0 = time.perf_counter()
    world = build_world(ensure_data(cfg))
    print(f"world: {len(world.leads):,} leads ({world.dropped:,} resolved before the scoring moment left out), "
          f"{len(world.events):,} events, {world.label.mean():.3f} positive; {time.perf_counter() - t0:.0f} s",
          flush=True)
    arms = [a for a in ARMS if a.key in cfg.arms]
    first = initial_champion(world, cfg, arms)
    print(f"initial champion on {first['leads']:,} history leads: holdout ROC AUC {first['holdout']['roc_auc']:.4f}",
          flush=True)

    def log_round(row):
        print(f"  ({row['arm']}) round {row['round']:2d} {row['month']}: {row['handed']:5,} of {row['leads']:,} handed "
              f"({row['explored']} explored), retrain {row['retrain']}; next month ROC AUC {row['roc_auc']:.4f} "
              f"ECE {row['ece']:.4f}  [{row['seconds']:.0f} s]", flush=True)

    rows = []
    for arm in arms:
        rows += run_arm(world, arm, cfg, work, log_round)
    fig = plot(rows, cfg.out / "loop.png")
    summary = {"config": {k: str(v) for k, v in asdict(cfg).items()}, "initial": first, "rows": rows,
               "seconds": round(time.perf_counter() - t0, 1), "machine": _util.machine()}
    mlflow.set_experiment("leadscore-loop-benchmark")
    with mlflow.start_run(run_name="learning loop"):
        mlflow.log_params({k: str(v) for k, v in asdict(cfg).items()})
        for row in rows:
            mlflow.log_metrics({f"{row['arm']}.roc_auc": row["roc_auc"], f"{row['arm']}.ece": row["ece"]},
                               step=row["round"])
        mlflow.log_figure(fig, "loop.png")
        mlflow.log_dict(summary, "loop.json")
    (cfg.out / "loop.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=LoopConfig.leads)
    ap.add_argument("--rounds", type=int, default=LoopConfig.rounds)
    ap.add_argument("--history-months", type=int, default=LoopConfig.history_months)
    ap.add_argument("--seed", type=int, default=LoopConfig.seed)
    ap.add_argument("--arms", default="abc")
    ap.add_argument("--out", type=Path, default=LoopConfig.out)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)  # MLflow's schema hints, once per registered version
    cfg = LoopConfig(leads=a.leads, rounds=a.rounds, history_months=a.history_months, seed=a.seed,
                     out=a.out.resolve(), arms=tuple(a.arms))
    summary = run(cfg)
    print(table(summary["rows"]))
    print(f"total {summary['seconds']:.0f} s; plot {cfg.out / 'loop.png'}")


if __name__ == "__main__":
    main()
