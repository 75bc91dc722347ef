"""`leadscore import`: load a dataset's leads, events and outcomes into the service's store, and score the
leads once with the champion, so the sales page has something to show (`make run` does this)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leadscore.cli.common import console, fail, setup_mlflow


def import_data(
    data: Annotated[Path, typer.Option(help="Dataset directory (leads, events, outcomes).")],
    recent: Annotated[int, typer.Option(min=1, help="Import the N most recently created leads.")] = 500,
) -> None:
    """Load the N most recent leads of a dataset with their events into the service store, store their
    outcomes as feedback (source "import") and score each lead once with the champion (as of the dataset's
    snapshot). Does nothing if those leads are already there, so it is safe to rerun."""
    from leadscore.features import schema as S
    from leadscore.features.loading import load_dataset
    from leadscore.features.problems import DataError
    from leadscore.serve import db, store
    from leadscore.settings import get_settings

    settings = get_settings()
    try:
        dataset = load_dataset(data)
    except DataError as e:
        fail(str(e))
    leads = dataset.leads.sort_values([S.CREATED_AT, S.LEAD_ID]).tail(recent)
    ids = [str(x) for x in leads[S.LEAD_ID]]
    db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    try:
        already = store.known_leads(engine, ids)
        if len(already) == len(ids):
            console.print(
                f"the {len(ids):,} most recent leads of {data} are already in the store: nothing to do"
            )
            return
        todo = leads[~leads[S.LEAD_ID].astype(str).isin(already)]
        result = _import(engine, dataset, todo, settings)
    finally:
        engine.dispose()
    console.print(
        f"imported {result['leads']:,} leads, {result['events']:,} events, {result['feedback']:,} "
        f"outcomes as feedback; scored {result['scored']:,} with model version {result['version']}"
    )


def _import(engine, dataset, leads, settings) -> dict:
    import sqlalchemy as sa

    from leadscore.features import schema as S
    from leadscore.serve import db, store
    from leadscore.serve.scoring import encoded_score_log_rows

    ids = set(leads[S.LEAD_ID].astype(str))
    snapshot = dataset.snapshot_at.to_pydatetime()
    now = store.now()

    def attrs(row) -> dict:
        return {a: row[a] for a in S.LEAD_ATTRIBUTES if isinstance(row.get(a), str)}

    lead_rows = [
        {
            "lead_id": str(r[S.LEAD_ID]),
            "created_at": r[S.CREATED_AT].to_pydatetime(),
            "attributes": attrs(r),
            "updated_at": now,
        }
        for r in leads.to_dict("records")
    ]
    ev = dataset.events[dataset.events[S.LEAD_ID].astype(str).isin(ids)]
    event_rows = [
        {
            "lead_id": str(lid),
            "type": t,
            "timestamp": ts.to_pydatetime(),
            "page": p if isinstance(p, str) else None,
            "received_at": now,
        }
        for lid, t, ts, p in zip(ev[S.LEAD_ID], ev[S.EVENT_TYPE], ev[S.TIMESTAMP], ev[S.PAGE], strict=False)
    ]
    out = dataset.outcomes[dataset.outcomes[S.LEAD_ID].astype(str).isin(ids)]
    # the API's feedback outcomes; "opportunity" is a CRM stage, not something sales answers on a lead
    out = out[out[S.OUTCOME].isin(("qualified", "disqualified", "won", "lost"))]
    feedback_rows = [
        {
            "lead_id": str(lid),
            "outcome": o,
            "reason": (r if o == "disqualified" and isinstance(r, str) else None),
            "note": None,
            "at": at.to_pydatetime(),
            "received_at": now,
            "source": "import",
            "idempotency_key": f"import:{lid}:{o}:{at.isoformat()}",
        }
        for lid, o, at, r in zip(
            out[S.LEAD_ID], out[S.OUTCOME], out[S.OUTCOME_AT], out[S.REASON], strict=False
        )
    ]
    with engine.begin() as conn:  # one transaction: a failed import leaves nothing half done
        conn.execute(sa.insert(db.leads), lead_rows)
        if event_rows:
            conn.execute(sa.insert(db.events), event_rows)
        if feedback_rows:
            conn.execute(sa.insert(db.feedback), feedback_rows)

    scored, version = 0, None
    try:
        from leadscore.model import registry

        setup_mlflow()
        model = registry.load_scoring_model(settings.model_uri)
    except Exception as e:  # noqa: BLE001 - no champion yet: the data is in, scores come with the first model
        console.print(f"[yellow]note:[/] not scoring: no model at {settings.model_uri} ({type(e).__name__})")
        return {
            "leads": len(lead_rows),
            "events": len(event_rows),
            "feedback": len(feedback_rows),
            "scored": 0,
            "version": None,
        }
    version = model.version
    stored = store.get_leads(engine, sorted(ids), settings.max_events_per_lead)
    batch = [stored[i] for i in sorted(stored)]
    # Each lead is scored as the service would have scored it while it was open: as of its first outcome
    # when it has one (so the score-log snapshot never holds post-outcome values, which feedback labels),
    # else as of the dataset's snapshot (the moment the export was taken).
    first = out.groupby(out[S.LEAD_ID].astype(str))[S.OUTCOME_AT].min().to_dict() if len(out) else {}
    for d in batch:
        d["as_of"] = min(first[d["lead_id"]].to_pydatetime(), snapshot) if d["lead_id"] in first else snapshot
    for start in range(0, len(batch), 1000):
        scored_part = model.score(batch[start : start + 1000], exploration=settings.exploration())
        # the service's own score writer (one transaction per part); history is not news: no handoff events
        with engine.begin() as conn:
            store.write_scores(
                conn,
                encoded_score_log_rows(scored_part, now, version),
                notify=False,
            )
        scored += len(scored_part.results)
    return {
        "leads": len(lead_rows),
        "events": len(event_rows),
        "feedback": len(feedback_rows),
        "scored": scored,
        "version": version,
    }
