"""Tests for the demo CRM generator (leadscore.demo.generate)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from leadscore.features import schema

from leadscore.demo.attribute_params import SENIORITIES
from leadscore.demo.generate import DatasetInfo, generate
from leadscore.demo.isotime import parse_iso_utc_ms
from leadscore.demo.params import DemoParams, DriftParams
from leadscore.demo.titles import seniority_from_title

N = 3000
FILES = (
    "leads.parquet",
    "events.parquet",
    "outcomes.parquet",
    "ground_truth/hidden_states.parquet",
    "dataset.json",
    "ground_truth/params.json",
)
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "a"
    calls = []
    info = generate(out, N, seed=7, chunk_size=1000, progress=lambda d, t: calls.append((d, t)))
    return out, info, calls


@pytest.fixture(scope="module")
def tables(gen):
    out, _, _ = gen
    return (
        pd.read_parquet(out / "leads.parquet"),
        pd.read_parquet(out / "events.parquet"),
        pd.read_parquet(out / "outcomes.parquet"),
    )


def _bytes(d: Path) -> dict[str, bytes]:
    return {f: (d / f).read_bytes() for f in FILES}


def test_same_seed_is_byte_identical_even_with_another_chunk_size(gen, tmp_path):
    # given a data set generated with seed 7 and chunk_size 1000
    out, _, _ = gen
    # when generating again with the same seed, once with the same and once with another chunk size
    generate(tmp_path / "b", N, seed=7, chunk_size=1000)
    generate(tmp_path / "c", N, seed=7, chunk_size=777)
    # then every file is byte-identical
    assert _bytes(tmp_path / "b") == _bytes(out)
    assert _bytes(tmp_path / "c") == _bytes(out)


def test_different_seeds_differ(gen, tmp_path):
    # given the seed-7 data set; when generating with seed 8
    out, _, _ = gen
    generate(tmp_path / "s8", N, seed=8)
    # then leads and events differ
    for f in ("leads.parquet", "events.parquet"):
        assert not pd.read_parquet(tmp_path / "s8" / f).equals(pd.read_parquet(out / f))


def test_info_dataset_json_and_progress(gen, tables):
    # given the generation result
    out, info, calls = gen
    _, events, outcomes = tables
    # then the returned info, dataset.json and the files agree
    assert isinstance(info, DatasetInfo)
    assert (info.n_leads, info.n_events, info.n_outcomes, info.seed) == (N, len(events), len(outcomes), 7)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["generator"] == "leadscore-demo/1" and meta["n_events"] == len(events) and meta["seed"] == 7
    assert pd.Timestamp(meta["snapshot_at"]) == pd.Timestamp(info.snapshot_at)
    assert info.snapshot_at.utcoffset().total_seconds() == 0
    # and progress is reported per chunk, ending at (n, n)
    assert calls == [(1000, N), (2000, N), (3000, N)]
    # and params.json round-trips to the parameters used
    assert DemoParams.from_json((out / "ground_truth" / "params.json").read_text()) == DemoParams()


def test_schema_columns_and_values(tables):
    leads, events, outcomes = tables
    # then columns are the canonical ones (+ the leakage trap column)
    assert list(leads.columns) == [*schema.LEAD_COLUMNS, "lead_quality"]
    assert list(events.columns) == list(schema.EVENT_COLUMNS)
    assert list(outcomes.columns) == list(schema.OUTCOME_COLUMNS)
    assert leads.lead_id.is_unique and leads.lead_id.str.fullmatch(r"L\d{7}").all()
    assert set(leads.source) <= set(schema.SOURCES)
    assert set(leads.industry.dropna()) <= set(schema.INDUSTRIES)
    assert set(leads.company_size.dropna()) <= set(schema.COMPANY_SIZES)
    assert leads.country.dropna().str.fullmatch(r"[A-Z]{2}").all()
    assert leads.email_domain.notna().all() and leads.email_domain.str.contains(r"\.").all()
    assert leads.email_domain.isin(schema.FREE_EMAIL_DOMAINS).mean() > 0.2
    assert set(leads.lead_quality.dropna()) <= {"high", "medium", "low", "worst"}
    assert set(events.type) == set(schema.EVENT_TYPES)
    assert set(events.lead_id) <= set(leads.lead_id) and set(outcomes.lead_id) <= set(leads.lead_id)
    web = events.type == "web_visit"
    assert events.page[web].isin(schema.PAGE_KINDS).all() and events.page[~web].isna().all()
    assert set(outcomes.outcome) == set(schema.OUTCOMES)
    nr = outcomes.outcome.isin(["qualified", "opportunity", "won"])
    assert outcomes.reason[nr].isna().all()
    assert outcomes.reason[outcomes.outcome == "disqualified"].isin(schema.DISQUALIFY_REASONS).all()
    assert outcomes.reason[outcomes.outcome == "lost"].isin(["price", "timing", "competitor"]).all()


def test_missing_values_rates(tables):
    leads, _, _ = tables
    # then MCAR missingness is near the configured rates (4 binomial standard errors)
    for col, rate in DemoParams().attributes.missing.items():
        se = np.sqrt(rate * (1 - rate) / N)
        assert abs(leads[col].isna().mean() - rate) < 4 * se, col
    assert leads.source.notna().all()


def test_titles_realistic_and_seniority_inferable(tables):
    leads, _, _ = tables
    titles = leads.job_title.dropna()
    levels = titles.map(seniority_from_title)
    # then every seniority level occurs and is recognised from the text, with several distinct titles
    assert set(levels) == set(SENIORITIES)
    assert titles.nunique() > 50
    assert {"Student", "CTO"} <= set(titles)


def test_timestamps_iso_with_mixed_offsets(tables):
    leads, events, outcomes = tables
    # then all timestamps are ISO strings with millisecond precision and an explicit offset
    for s in (leads.created_at, events.timestamp, outcomes["at"]):
        assert s.str.match(ISO).all()
    offsets = events.timestamp.str[-6:]
    assert offsets.nunique() >= 5 and leads.created_at.str[-6:].nunique() >= 5
    # and a lead's events carry the same offset as its created_at
    merged = events.merge(leads[["lead_id", "created_at"]], on="lead_id")
    assert (merged.timestamp.str[-6:] == merged.created_at.str[-6:]).all()


def test_duplicates_present_but_rare(tables):
    _, events, _ = tables
    # then ~0.3 % of event rows are exact duplicates
    rate = events.duplicated().mean()
    assert 0.001 < rate < 0.006


def test_handover_lead_quality_and_timing(tables):
    leads, events, outcomes = tables
    created = pd.Series(parse_iso_utc_ms(leads.created_at.tolist()), index=leads.lead_id)
    handed = events[events.type == "handed_to_sales"].drop_duplicates()
    # then lead_quality is filled exactly for the leads that were handed to sales
    is_handed = leads.lead_id.isin(handed.lead_id)
    assert leads.lead_quality[~is_handed].isna().all()
    assert leads.lead_quality[is_handed].notna().all()
    assert 0.2 < is_handed.mean() < 0.45
    # and hand-over happens once per lead, stamped exactly at created_at + whole days
    assert handed.lead_id.is_unique
    delta = parse_iso_utc_ms(handed.timestamp.tolist()) - created[handed.lead_id].to_numpy()
    assert (delta % DAY_MS == 0).all() and (delta > 0).all()
    # and qualification outcomes fall strictly inside a lead-age day, after the hand-over
    res = outcomes[outcomes.outcome.isin(["qualified", "disqualified"])]
    assert res.lead_id.is_unique and res.lead_id.isin(handed.lead_id).all()
    frac = (parse_iso_utc_ms(res["at"].tolist()) - created[res.lead_id].to_numpy()) % DAY_MS / DAY_MS
    assert ((frac > 0.3) & (frac < 0.99)).all()
    # and leakage: lead_quality is strongly tied to the recorded outcome
    q = leads.set_index("lead_id").lead_quality[res.lead_id].to_numpy()
    good = np.isin(q, ["high", "medium"])
    assert (good == (res.outcome == "qualified").to_numpy()).mean() > 0.85


def test_events_after_outcome_exist_and_follow_ups_are_ordered(tables):
    _, events, outcomes = tables
    ev = events.assign(ms=parse_iso_utc_ms(events.timestamp.tolist()))
    oc = outcomes.assign(ms=parse_iso_utc_ms(outcomes["at"].tolist()))
    res = oc[oc.outcome.isin(["qualified", "disqualified"])].set_index("lead_id").ms
    after = ev[ev.lead_id.isin(res.index)]
    after = after[after.ms > res[after.lead_id].to_numpy()]
    # then some sales events carry timestamps after the outcome, but no marketing events do
    assert len(after) > 0 and set(after.type) <= {"meeting", "sales_call"}
    # and opportunity/won/lost follow a qualification
    first = oc.sort_values("ms").groupby("lead_id").outcome.first()
    assert first.isin(["qualified", "disqualified"]).all()
    later = oc[oc.outcome.isin(["opportunity", "won", "lost"])]
    assert (first[later.lead_id] == "qualified").all()


def test_drift_changes_nothing_before_its_moment_and_is_recorded(gen, tmp_path):
    # given the seed-7 data set and the same seed with a base-rate shift from 2026-01-01
    out, _, _ = gen
    drift = DriftParams()
    generate(tmp_path / "drift", N, seed=7, chunk_size=1000, params=DemoParams(drift=drift))
    at_ms = int(pd.Timestamp(drift.at).value // 1_000_000)
    # then leads are identical, and events stamped before the shift are identical (the hidden chain only
    # changes from the shift on), while later events differ
    a, b = (pd.read_parquet(d / "leads.parquet") for d in (out, tmp_path / "drift"))
    assert a.drop(columns="lead_quality").equals(b.drop(columns="lead_quality"))
    ev = [pd.read_parquet(d / "events.parquet") for d in (out, tmp_path / "drift")]
    before = [e[parse_iso_utc_ms(e.timestamp.tolist()) < at_ms].reset_index(drop=True) for e in ev]
    after = [e[parse_iso_utc_ms(e.timestamp.tolist()) >= at_ms].reset_index(drop=True) for e in ev]
    assert len(before[0]) > 1000 and before[0].equals(before[1])
    assert not after[0].equals(after[1])
    # and params.json records the shift (the default data set's params.json has no "drift" key at all)
    text = (tmp_path / "drift" / "ground_truth" / "params.json").read_text()
    assert DemoParams.from_json(text) == DemoParams(drift=drift)
    assert "drift" not in json.loads((out / "ground_truth" / "params.json").read_text())
