"""Read and validate a dataset directory: leads, events and outcomes in the canonical data model, and the
optional selection table (how the handoff policy picked the leads that got a verdict).

Files may be Parquet or CSV (`leads.parquet` or `leads.csv`, ...). Timestamps may be ISO-8601 strings with
any UTC offset (normalised to UTC; a string without an offset is taken as UTC) or typed timestamps. Every
problem is reported with file, row, column and reason, and loading fails rather than dropping rows. The one
repair made is removing exact duplicate events, which real exports contain; it is counted in the report.

Events are read with Arrow and never become Python strings: `lead_id`, `type` and `page` are dictionary
encoded and checked once per distinct value, duplicates are found on integer codes and int64 milliseconds,
and ISO timestamps are parsed by Arrow's cast. In `Dataset.events` those three columns are pandas
categoricals whose categories are the dataset's lead ids (in the order of `leads`), `S.EVENT_TYPES` and
`S.PAGE_KINDS`, so a category's code is the lead's row in `leads` (or the type's / page's position).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from leadscore.features import schema as S
from leadscore.features.checks import (
    check_allowed,
    check_allowed_codes,
    check_columns,
    check_known_leads,
    parse_timestamps,
)
from leadscore.features.problems import MAX_PROBLEMS_SHOWN, DataError, Problem
from leadscore.features.reading import (
    as_str,
    dictionary_codes,
    exact_duplicates,
    find_table,
    read_events,
    read_frame,
)

# dataset.json's `selection_version` for a selection table with a row per hand-over moment (version 1, with
# no such key, held each lead's first hand-over only: docs/data-model.md, "Versions")
SELECTION_VERSION = 2


@dataclass(frozen=True)
class Dataset:
    leads: pd.DataFrame  # lead_id, created_at (UTC), attributes, custom columns
    events: pd.DataFrame  # lead_id, type, timestamp (UTC), page
    outcomes: pd.DataFrame  # lead_id, outcome, at (UTC), reason
    snapshot_at: pd.Timestamp  # the moment the export was taken: nothing after it is known
    notes: tuple[str, ...] = field(default=())  # repairs made while loading, for the log
    # optional: lead_id, handed_at (UTC, null = never handed over by the policy), propensity (the probability
    # the policy handed the lead over); None when the data has no selection table (e.g. a CRM export)
    selection: pd.DataFrame | None = None

    @property
    def custom_columns(self) -> list[str]:
        return [c for c in self.leads.columns if c not in S.LEAD_COLUMNS]


def load_selection(
    path: Path | str, known: pd.Index, problems: list[Problem], frame: pd.DataFrame | None = None
) -> pd.DataFrame | None:
    """The optional selection table (the file at `path`, or `frame` already read from it): every lead in
    leads; a row per moment the policy handed the lead over (`handed_at` a UTC time, one row per lead and
    moment) or one row with `handed_at` empty for a lead it never handed over; `propensity` a number in
    [0, 1], above 0 for a hand-over."""
    sf = str(path)
    sel = read_frame(Path(path)) if frame is None else frame
    if not check_columns(sel.columns, S.SELECTION_COLUMNS, sf, problems):
        return None
    sel = sel[list(S.SELECTION_COLUMNS)].reset_index(drop=True)
    sel[S.LEAD_ID] = as_str(sel[S.LEAD_ID])
    check_known_leads(sel, known, sf, problems)
    handed = sel[S.HANDED_AT]
    present = handed.notna().to_numpy()  # empty: never handed over
    at = pd.Series(pd.NaT, index=sel.index, dtype="datetime64[ms, UTC]")
    rows = np.flatnonzero(present)
    if len(rows):  # only the given times are parsed: an empty one is not a problem
        found: list[Problem] = []
        at.iloc[rows] = parse_timestamps(
            handed.iloc[rows].reset_index(drop=True), sf, S.HANDED_AT, found
        ).to_numpy()
        problems += [Problem(sf, int(rows[(p.row or 1) - 1]) + 1, p.column, p.reason) for p in found]
    sel[S.HANDED_AT] = at
    # several rows of a lead are its hand-over moments (one each); a lead never handed over has one row
    ids = sel[S.LEAD_ID]
    dup = (sel.duplicated([S.LEAD_ID, S.HANDED_AT]) | (ids.duplicated(keep=False) & ~present)) & ids.notna()
    for i in np.flatnonzero(dup.to_numpy())[:MAX_PROBLEMS_SHOWN]:
        what = "hand-over moment" if present[i] else "row without handed_at (never handed over)"
        problems.append(Problem(sf, int(i) + 1, S.LEAD_ID, f"duplicate {what} for lead {ids.iloc[i]!r}"))
    prop = pd.to_numeric(sel[S.PROPENSITY], errors="coerce")
    bad = prop.isna() | (prop < 0) | (prop > 1) | (present & (prop <= 0))
    for i in np.flatnonzero(bad.to_numpy())[: MAX_PROBLEMS_SHOWN + 1]:
        v = sel[S.PROPENSITY].iloc[i]
        reason = (
            "missing propensity"
            if pd.isna(v)
            else f"propensity {str(v)[:40]!r} must be a number in [0, 1]"
            if pd.isna(prop.iloc[i]) or not 0 <= prop.iloc[i] <= 1
            else "a lead the policy handed over must have a propensity above 0"
        )
        problems.append(Problem(sf, int(i) + 1, S.PROPENSITY, reason))
    sel[S.PROPENSITY] = prop.astype(np.float64)
    return sel


def _old_selection_note(sel: pd.DataFrame, version: object, path: Path) -> str | None:
    """A warning when the selection table may be one written before version 2: dataset.json does not say
    version 2 and no lead has two hand-over moments. Such a table lists each lead's first hand-over only,
    which training reads as the lead's only moment: the bias version 2 removed."""
    if isinstance(version, int) and version >= SELECTION_VERSION:
        return None
    handed = sel.loc[sel[S.HANDED_AT].notna(), S.LEAD_ID]
    if handed.duplicated().any():  # several moments of a lead: a version-2 table whatever dataset.json says
        return None
    return (
        f"WARNING: {path} may be a selection table written before version {SELECTION_VERSION} (dataset.json "
        f"has no selection_version {SELECTION_VERSION}): one row per lead, its first hand-over, which "
        "biases training (docs/data-model.md, 'Versions'). Export it again (leadscore export); if you wrote "
        f'it in the current layout, add "selection_version": {SELECTION_VERSION} to dataset.json.'
    )


def dataset_snapshot(data_dir: Path | str) -> pd.Timestamp | None:
    """`dataset.json`'s `snapshot_at` as UTC (without an offset it is UTC, as every time of the data), None
    when there is none; `DataError` naming the field when it is not a time. Every engine reads it here."""
    meta_path = Path(data_dir) / "dataset.json"
    snap = json.loads(meta_path.read_text()).get("snapshot_at") if meta_path.exists() else None
    if not snap:
        return None
    try:
        t = pd.Timestamp(snap)
    except (TypeError, ValueError):
        t = pd.NaT
    if pd.isna(t):
        raise DataError([Problem(str(meta_path), None, "snapshot_at", f"not an ISO-8601 time: {snap!r}")])
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def load_dataset(data_dir: Path | str) -> Dataset:
    """Load and validate `data_dir`; raise `DataError` listing every problem found."""
    data_dir = Path(data_dir)
    leads_path, events_path = find_table(data_dir, "leads"), find_table(data_dir, "events")
    outcomes_path = find_table(data_dir, "outcomes", required=False)
    meta_path = data_dir / "dataset.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return dataset_from_frames(
        read_frame(leads_path),
        read_events(events_path),
        read_frame(outcomes_path) if outcomes_path else None,
        snapshot_at=dataset_snapshot(data_dir),
        files=(str(leads_path), str(events_path), str(outcomes_path or "outcomes")),
        selection_path=find_table(data_dir, "selection", required=False),
        selection_version=meta.get("selection_version"),
    )


def dataset_from_frames(
    leads: pd.DataFrame,
    events: pa.Table,
    outcomes: pd.DataFrame | None = None,
    *,
    snapshot_at: pd.Timestamp | None = None,
    files: tuple[str, str, str] = ("leads", "events", "outcomes"),
    selection_path: Path | None = None,
    selection_version: object = None,
    selection: pd.DataFrame | None = None,
) -> Dataset:
    """Validate tables already read (a dataset directory's files, or one lead-hash partition of them on
    Spark: `leadscore.spark`) with the loader's rules; raise `DataError` listing every problem found.
    `files` name the tables in the problems reported; the selection table is read from `selection_path`,
    or given already read as `selection`."""
    problems: list[Problem] = []
    if outcomes is None:
        outcomes = pd.DataFrame({c: pd.Series(dtype=object) for c in S.OUTCOME_COLUMNS})
    lf, ef, of = files
    ok = check_columns(leads.columns, (S.LEAD_ID, S.CREATED_AT), lf, problems)
    ok &= check_columns(events.column_names, (S.LEAD_ID, S.EVENT_TYPE, S.TIMESTAMP), ef, problems)
    ok &= check_columns(outcomes.columns, (S.LEAD_ID, S.OUTCOME, S.OUTCOME_AT), of, problems)
    if not ok:
        raise DataError(problems)

    leads[S.LEAD_ID] = as_str(leads[S.LEAD_ID])
    for c in S.LEAD_ATTRIBUTES:
        leads[c] = as_str(leads[c]) if c in leads.columns else None
    missing_id = leads[S.LEAD_ID].isna()
    for i in np.flatnonzero(missing_id.to_numpy())[:MAX_PROBLEMS_SHOWN]:
        problems.append(Problem(lf, int(i) + 1, S.LEAD_ID, "missing lead id"))
    dup = leads[S.LEAD_ID].duplicated() & ~missing_id
    for i in np.flatnonzero(dup.to_numpy())[:MAX_PROBLEMS_SHOWN]:
        problems.append(Problem(lf, int(i) + 1, S.LEAD_ID, f"duplicate lead id {leads[S.LEAD_ID].iloc[i]!r}"))
    leads[S.CREATED_AT] = parse_timestamps(leads[S.CREATED_AT], lf, S.CREATED_AT, problems)

    n_events = events.num_rows
    ev_ids, ev_id_code = dictionary_codes(events.column(S.LEAD_ID))
    ev_types, ev_type_code = dictionary_codes(events.column(S.EVENT_TYPE))
    ev_pages, ev_page_code = (
        dictionary_codes(events.column(S.PAGE))
        if S.PAGE in events.column_names
        else (np.empty(0, dtype=object), np.full(n_events, -1, dtype=np.int32))
    )
    ev_ts = parse_timestamps(events.column(S.TIMESTAMP), ef, S.TIMESTAMP, problems)
    del events
    type_code = check_allowed_codes(ev_types, ev_type_code, S.EVENT_TYPES, S.EVENT_TYPE, ef, problems)
    page_code = check_allowed_codes(ev_pages, ev_page_code, S.PAGE_KINDS, S.PAGE, ef, problems, nullable=True)
    # each distinct event lead id is looked up once: its row in `leads`, or -1
    lead_ids = leads[S.LEAD_ID]
    present = np.flatnonzero((lead_ids.notna() & ~lead_ids.duplicated()).to_numpy())
    found = pd.Index(lead_ids.iloc[present].to_numpy(dtype=object)).get_indexer(ev_ids)
    row_of = (
        np.where(found >= 0, present[np.maximum(found, 0)], -1) if len(present) else np.full(len(ev_ids), -1)
    )
    lead_code = np.append(row_of.astype(np.int32), -1)[ev_id_code]
    for i in np.flatnonzero(lead_code < 0)[: MAX_PROBLEMS_SHOWN + 1]:
        v = ev_ids[ev_id_code[i]] if ev_id_code[i] >= 0 else None
        problems.append(Problem(ef, int(i) + 1, S.LEAD_ID, f"lead {v!r} is not in leads"))
    known = pd.Index(leads[S.LEAD_ID].dropna())

    outcomes[S.LEAD_ID] = as_str(outcomes[S.LEAD_ID])
    if S.REASON not in outcomes.columns:
        outcomes[S.REASON] = None
    outcomes[S.OUTCOME_AT] = parse_timestamps(outcomes[S.OUTCOME_AT], of, S.OUTCOME_AT, problems)
    check_allowed(outcomes, S.OUTCOME, S.OUTCOMES, of, problems)
    check_known_leads(outcomes, known, of, problems)
    if selection_path is not None or selection is not None:
        selection = load_selection(selection_path or "selection", known, problems, frame=selection)
    if problems:
        raise DataError(problems)

    notes = []
    ms = ev_ts.to_numpy(dtype="datetime64[ms]").astype(np.int64)
    repeat = exact_duplicates(lead_code, type_code, page_code, ms)
    del ms
    keep = np.flatnonzero(~repeat)
    categories = pd.Index(leads[S.LEAD_ID].to_numpy(dtype=object), dtype=leads[S.LEAD_ID].dtype)
    events = pd.DataFrame(
        {
            S.LEAD_ID: pd.Categorical.from_codes(lead_code[keep], categories=categories),
            S.EVENT_TYPE: pd.Categorical.from_codes(
                type_code[keep], categories=pd.Index(S.EVENT_TYPES, dtype=str)
            ),
            S.TIMESTAMP: ev_ts.iloc[keep].reset_index(drop=True),
            S.PAGE: pd.Categorical.from_codes(page_code[keep], categories=pd.Index(S.PAGE_KINDS, dtype=str)),
        }
    )
    if len(keep) < n_events:
        notes.append(f"removed {n_events - len(keep)} exact duplicate event(s) from {ef}")

    snapshot = snapshot_at
    if selection is not None and selection_path is not None:
        note = _old_selection_note(selection, selection_version, selection_path)
        notes += [note] if note else []
    if snapshot is None:
        stamps = [leads[S.CREATED_AT].max(), events[S.TIMESTAMP].max(), outcomes[S.OUTCOME_AT].max()]
        snapshot = max(t for t in stamps if pd.notna(t))
        notes.append(
            f"no dataset.json snapshot_at: the data is taken to end at its last timestamp {snapshot}"
        )
    return Dataset(
        leads=leads,
        events=events,
        outcomes=outcomes.reset_index(drop=True),
        snapshot_at=snapshot,
        notes=tuple(notes),
        selection=selection,
    )
