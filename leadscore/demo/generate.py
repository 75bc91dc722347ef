"""Simulate the demo CRM export (leads, events, outcomes) and its ground truth.

Randomness is counter-based (``leadscore.demo.rng``): each draw is a function of (seed, lead, day, slot),
so the output does not depend on ``chunk_size``; row groups have fixed sizes, so even the parquet bytes
do not. See docs/demo-data.md for the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.demo import rng
from leadscore.demo.attributes import Leads, pick, static
from leadscore.demo.isotime import format_iso
from leadscore.demo.model import Compiled
from leadscore.demo.params import FITS, INTENTS, RESOLVED, DemoParams
from leadscore.demo.simulate import QUALITIES, REASONS, Chunk, simulate_chunk
from leadscore.demo.titles import DEPARTMENTS, TEMPLATES
from leadscore.features import schema

ROW_GROUP = 1_000_000
CORP_A = (
    "acme",
    "north",
    "blue",
    "nova",
    "bright",
    "terra",
    "vertex",
    "lumen",
    "quant",
    "stone",
    "silver",
    "apex",
    "cedar",
    "orbit",
    "pioneer",
    "delta",
    "harbor",
    "summit",
    "iron",
    "clear",
)
CORP_B = (
    "labs",
    "systems",
    "works",
    "group",
    "tech",
    "soft",
    "data",
    "logic",
    "media",
    "health",
    "bank",
    "retail",
    "motors",
    "partners",
    "analytics",
    "cloud",
)
TLDS = ("com", "io", "de", "co.uk", "fr", "net", "com.br", "co")
FREE_DOMAINS = tuple(sorted(schema.FREE_EMAIL_DOMAINS))
FREE_W = np.array(
    [
        12.0 if d == "gmail.com" else 4.0 if d in ("yahoo.com", "hotmail.com", "outlook.com") else 1.0
        for d in FREE_DOMAINS
    ]
)
TITLE_TEMPLATES = {lvl: TEMPLATES[lvl] for lvl in TEMPLATES}


@dataclass(frozen=True)
class DatasetInfo:
    n_leads: int
    n_events: int
    n_outcomes: int
    snapshot_at: datetime
    seed: int


# ----------------------------------------------------------------------------------------------------------
class _FixedRowGroupWriter:
    """Buffers record batches and writes row groups of exactly ``rows`` rows (chunking-independent bytes)."""

    def __init__(self, path: Path, schema_: pa.Schema, rows: int = ROW_GROUP) -> None:
        self.w = pq.ParquetWriter(path, schema_, compression="zstd")
        self.schema = schema_
        self.rows = rows
        self.buf: list[pa.Table] = []
        self.n = 0
        self.total = 0

    def write(self, t: pa.Table) -> None:
        self.buf.append(t)
        self.n += t.num_rows
        self.total += t.num_rows
        while self.n >= self.rows:
            t = pa.concat_tables(self.buf).combine_chunks()
            self.w.write_table(t.slice(0, self.rows), row_group_size=self.rows)
            rest = t.slice(self.rows)
            self.buf, self.n = [rest], rest.num_rows

    def close(self) -> None:
        if self.n or self.total == 0:
            t = pa.concat_tables(self.buf) if self.buf else self.schema.empty_table()
            self.w.write_table(t.combine_chunks(), row_group_size=self.rows)
        self.w.close()


def _strings(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    codes = np.asarray(codes)
    idx = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(idx, pa.array(list(names), pa.string())).cast(pa.string())


LEADS_SCHEMA = pa.schema([(c, pa.string()) for c in (*schema.LEAD_COLUMNS, "lead_quality")])
EVENTS_SCHEMA = pa.schema([(c, pa.string()) for c in schema.EVENT_COLUMNS])
OUTCOMES_SCHEMA = pa.schema([(c, pa.string()) for c in schema.OUTCOME_COLUMNS])
HIDDEN_SCHEMA = pa.schema(
    [("lead_id", pa.string()), ("from_day", pa.int32()), ("fit", pa.string()), ("intent", pa.string())]
)


# ----------------------------------------------------------------------------------------------------------
def _tables(c: Compiled, key: np.uint64, chunk: Chunk, id_width: int) -> tuple[pa.Table, ...]:
    """The chunk as the four tables of the export: leads, events, outcomes and the hidden states."""
    g, leads, walk = chunk.g, chunk.leads, chunk.walk
    ids = np.array([f"L{int(x) + 1:0{id_width}d}" for x in g], dtype=object)
    id_arr = pa.array(ids, pa.string())

    def lead_ids(codes: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), id_arr).cast(pa.string())

    offset = leads.offset
    leads_table = pa.table(
        {
            "lead_id": id_arr,
            "created_at": format_iso(leads.created, offset),
            "source": _strings(leads.source, c.sources),
            "industry": _strings(leads.industry_shown, c.industries),
            "company_size": _strings(leads.size_shown, c.sizes),
            "country": _strings(leads.country_shown, c.countries),
            "job_title": pa.array(_titles(c, key, g, leads), pa.string()),
            "email_domain": pa.array(_domains(key, g, leads.free_email), pa.string()),
            "lead_quality": _strings(chunk.quality, QUALITIES),
        },
        schema=LEADS_SCHEMA,
    )
    ev = chunk.events
    events = pa.table(
        {
            "lead_id": pa.DictionaryArray.from_arrays(pa.array(ev.lead), id_arr).cast(pa.string()),
            "type": _strings(ev.code, schema.EVENT_TYPES),
            "timestamp": format_iso(ev.ts, offset[ev.lead]),
            "page": _strings(ev.extra, schema.PAGE_KINDS),
        },
        schema=EVENTS_SCHEMA,
    )
    oc = chunk.outcomes
    oo = np.lexsort((oc.code, oc.ts, oc.lead))
    ol = oc.lead[oo]
    outcomes = pa.table(
        {
            "lead_id": lead_ids(ol),
            "outcome": _strings(oc.code[oo], schema.OUTCOMES),
            "at": format_iso(oc.ts[oo], offset[ol]),
            "reason": _strings(oc.extra[oo], REASONS),
        },
        schema=OUTCOMES_SCHEMA,
    )
    ho = np.lexsort((walk.state_day, walk.state_lead))
    hl = walk.state_lead[ho]
    hidden = pa.table(
        {
            "lead_id": lead_ids(hl),
            "from_day": pa.array(walk.state_day[ho], pa.int32()),
            "fit": _strings(leads.fit[hl], FITS),
            "intent": _strings(walk.state[ho], (*INTENTS, RESOLVED)),
        },
        schema=HIDDEN_SCHEMA,
    )
    return leads_table, events, outcomes, hidden


def _titles(c: Compiled, key: np.uint64, g: np.ndarray, leads: Leads) -> list[str | None]:
    """A job title from the templates of the lead's seniority (some missing)."""
    titles: list[str | None] = []
    ut1, ut2 = static(key, g, 7), static(key, g, 8)
    for i in range(g.size):
        if leads.title_missing[i]:
            titles.append(None)
            continue
        tpl = TITLE_TEMPLATES[c.seniorities[leads.seniority[i]]]
        title = tpl[int(ut1[i] * len(tpl))]
        titles.append(
            title.format(d=DEPARTMENTS[int(ut2[i] * len(DEPARTMENTS))]) if "{d}" in title else title
        )
    return titles


def _domains(key: np.uint64, g: np.ndarray, free: np.ndarray) -> list[str]:
    """A free-mail domain, or a made-up company domain."""
    ua, ub, uc, uf = static(key, g, 9), static(key, g, 10), static(key, g, 11), static(key, g, 18)
    fi = pick(uf, FREE_W / FREE_W.sum())
    return [
        FREE_DOMAINS[fi[i]]
        if free[i]
        else CORP_A[int(ua[i] * len(CORP_A))]
        + CORP_B[int(ub[i] * len(CORP_B))]
        + "."
        + TLDS[int(uc[i] * len(TLDS))]
        for i in range(g.size)
    ]


def generate(
    out_dir: Path,
    n_leads: int,
    seed: int = 0,
    chunk_size: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
    params: DemoParams | None = None,
) -> DatasetInfo:
    """Write leads/events/outcomes parquet files, dataset.json and ground_truth/ into out_dir."""
    if n_leads < 1 or n_leads >= 2**30:
        raise ValueError("n_leads must be in [1, 2**30)")
    params = params or DemoParams()
    c = Compiled.build(params)
    key = rng.seed_key(seed)
    out_dir = Path(out_dir)
    (out_dir / "ground_truth").mkdir(parents=True, exist_ok=True)
    id_width = max(7, len(str(n_leads)))
    writers = {
        "leads": _FixedRowGroupWriter(out_dir / "leads.parquet", LEADS_SCHEMA),
        "events": _FixedRowGroupWriter(out_dir / "events.parquet", EVENTS_SCHEMA),
        "outcomes": _FixedRowGroupWriter(out_dir / "outcomes.parquet", OUTCOMES_SCHEMA),
        "hidden": _FixedRowGroupWriter(out_dir / "ground_truth" / "hidden_states.parquet", HIDDEN_SCHEMA),
    }
    chunk_size = max(1, int(chunk_size))
    try:
        for g0 in range(0, n_leads, chunk_size):
            g1 = min(n_leads, g0 + chunk_size)
            for name, table in zip(
                ("leads", "events", "outcomes", "hidden"),
                _tables(c, key, simulate_chunk(c, key, n_leads, g0, g1), id_width),
                strict=True,
            ):
                writers[name].write(table)
            if progress is not None:
                progress(g1, n_leads)
    finally:
        for w in writers.values():
            w.close()
    snapshot = datetime.fromtimestamp(c.snapshot_ms / 1000, tz=UTC)
    info = DatasetInfo(
        n_leads=n_leads,
        n_events=writers["events"].total,
        n_outcomes=writers["outcomes"].total,
        snapshot_at=snapshot,
        seed=seed,
    )
    meta = {
        "snapshot_at": snapshot.isoformat().replace("+00:00", "Z"),
        "seed": seed,
        "n_leads": n_leads,
        "n_events": info.n_events,
        "n_outcomes": info.n_outcomes,
        "generator": params.generator,
    }
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out_dir / "ground_truth" / "params.json").write_text(params.to_json() + "\n")
    return info
