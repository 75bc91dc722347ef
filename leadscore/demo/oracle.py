"""Exact ground-truth probabilities for the demo data (see docs/demo-data.md, "The oracle").

``observable``: forward filtering of the hidden (fit, intent) posterior from what is observable strictly
before ``as_of`` (re-read from the written files), then absorption over the horizon. Exact for a row whose
as_of does not depend on the lead's hidden path (a whole-day age).
``handoff``: the same, also given that the lead's first hand-over is at as_of (it is in review then).
``training`` (with a qualified-lead definition): exact for a row of ``training_rows(definition)`` given only
what the row's features see: it was either a sampled age or the first hand-over (features.labels).
``hidden``: the same absorption probability given the true (fit, intent) on the as_of day.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from leadscore.demo.filtering import CHANNEL, NCH, fit_prior, forward_filter
from leadscore.demo.isotime import parse_iso_utc_ms
from leadscore.demo.model import DAY_MS, REVIEW, Compiled
from leadscore.demo.params import FITS, INTENTS, DemoParams
from leadscore.features.labels import QualifiedDefinition, age_probability


def load_params(data_dir: Path) -> DemoParams:
    return DemoParams.from_json((Path(data_dir) / "ground_truth" / "params.json").read_text())


def _read(path: Path, ids: pa.Array, columns: list[str] | None = None) -> pd.DataFrame:
    t = pq.read_table(path, columns=columns)
    t = t.filter(pc.is_in(t["lead_id"], value_set=ids))
    return t.to_pandas()


def _row_probabilities(post: np.ndarray, v: np.ndarray, handed_before: np.ndarray) -> tuple[np.ndarray, ...]:
    """From the predictive posterior of (fit, intent) on day k: P(label), P(first hand-over on day k) and
    P(label and first hand-over on day k), all given the observations of days 0..k-1; `v`: each row's
    absorption table (rows, fit, intent), which depends on the row when the demo data has a drift."""
    joint = post * v
    label = joint.sum(axis=(1, 2))
    first = np.where(handed_before, 0.0, post[:, :, REVIEW].sum(axis=1))
    label_and_first = np.where(handed_before, 0.0, joint[:, :, REVIEW].sum(axis=1))
    return label, first, label_and_first


def oracle_probabilities(
    data_dir: Path,
    rows: pd.DataFrame,
    horizon_days: int = 30,
    lead_chunk_cells: int = 4_000_000,
    definition: QualifiedDefinition | None = None,
) -> pd.DataFrame:
    """P(recorded 'qualified' in (as_of, as_of + horizon]) per row: columns observable, handoff, hidden,
    and training when a qualified-lead definition is given (its ``horizon_days`` then wins)."""
    data_dir = Path(data_dir)
    if definition is not None:
        horizon_days = definition.horizon_days
    c = Compiled.build(load_params(data_dir))
    # (first drifted step 0..H, fit, intent); without drift every row uses the last (undrifted) table
    v_by_step = np.stack([c.absorption(horizon_days, t) for t in range(horizon_days + 1)])
    out = pd.DataFrame({"observable": np.nan, "handoff": np.nan, "hidden": np.nan}, index=rows.index)
    if definition is not None:
        out["training"] = np.nan
    if len(rows) == 0:
        return out
    row_ids = rows["lead_id"].astype(str).to_numpy()
    as_of = pd.to_datetime(rows["as_of"], utc=True).dt.tz_localize(None).astype("datetime64[ms]")
    as_of_ms = as_of.to_numpy().astype(np.int64)
    uniq, row_lead = np.unique(row_ids, return_inverse=True)
    ids = pa.array(uniq, pa.string())

    leads = _read(data_dir / "leads.parquet", ids).set_index("lead_id").reindex(uniq)
    known = leads["created_at"].notna().to_numpy()
    created = np.zeros(len(uniq), np.int64)
    created[known] = parse_iso_utc_ms(leads.loc[known, "created_at"].to_numpy(dtype=object))
    prior = fit_prior(c, leads.reset_index())
    k = np.floor_divide(as_of_ms - created[row_lead], DAY_MS)
    ok = known[row_lead] & (k >= 0)
    step = c.first_drifted_step(created[row_lead], k, horizon_days)

    # outcomes strictly before as_of: a recorded qualification/disqualification -> NaN
    outc = _read(data_dir / "outcomes.parquet", ids, ["lead_id", "outcome", "at"])
    outc = outc[outc["outcome"].isin(["qualified", "disqualified"])]
    first_res = np.full(len(uniq), np.iinfo(np.int64).max)
    if len(outc):
        oi = np.searchsorted(uniq, outc["lead_id"].to_numpy(dtype=str))
        np.minimum.at(first_res, oi, parse_iso_utc_ms(outc["at"].to_numpy(dtype=object)))
    ok &= first_res[row_lead] >= as_of_ms  # outcome at/after as_of is not observable yet

    kmax = np.zeros(len(uniq), np.int64)
    np.maximum.at(kmax, row_lead[ok], k[ok])

    ev = _read(data_dir / "events.parquet", ids).drop_duplicates()
    ev_lead = np.searchsorted(uniq, ev["lead_id"].to_numpy(dtype=str))
    ev_ms = parse_iso_utc_ms(ev["timestamp"].to_numpy(dtype=object))
    ev_day = np.floor_divide(ev_ms - created[ev_lead], DAY_MS)
    typ = ev["type"].to_numpy(dtype=object)
    page = ev["page"].to_numpy(dtype=object)
    chan = np.array(
        [CHANNEL.get((t, p if isinstance(p, str) else None), -1) for t, p in zip(typ, page, strict=False)],
        dtype=np.int64,
    )
    inwin = (ev_day >= 0) & (ev_day < kmax[ev_lead]) & (ev_ms < as_of_ms.max() + 1)
    handed_day = np.full(len(uniq), np.iinfo(np.int64).max)
    hsel = inwin & (typ == "handed_to_sales")
    np.minimum.at(handed_day, ev_lead[hsel], ev_day[hsel])
    csel = inwin & (chan >= 0)
    ev_lead, ev_day, chan = ev_lead[csel], ev_day[csel], chan[csel]

    # filter leads in chunks sorted by kmax (bounded memory: cells = leads x days)
    order = np.argsort(kmax, kind="stable")
    ev_order = np.argsort(ev_lead, kind="stable")
    ev_lead, ev_day, chan = ev_lead[ev_order], ev_day[ev_order], chan[ev_order]
    obs, first, label_first = (np.full(len(rows), np.nan) for _ in range(3))
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j - i + 1) * max(int(kmax[order[j]]), 1) <= lead_chunk_cells:
            j += 1
        chunk = order[i:j]
        K = int(kmax[chunk].max())
        local = np.full(len(uniq), -1)
        local[chunk] = np.arange(chunk.size)
        counts = np.zeros((chunk.size, max(K, 1), NCH), np.int32)
        lo_, hi_ = np.searchsorted(ev_lead, chunk.min()), np.searchsorted(ev_lead, chunk.max(), side="right")
        sel = np.arange(lo_, hi_)
        sel = sel[local[ev_lead[sel]] >= 0]
        np.add.at(counts, (local[ev_lead[sel]], ev_day[sel], chan[sel]), 1)
        rsel = np.flatnonzero(ok & (local[row_lead] >= 0))
        want_k = np.unique(k[rsel])
        res = forward_filter(
            c,
            prior[chunk],
            counts,
            handed_day[chunk],
            kmax[chunk],
            want_k,
            created[chunk],
        )
        for kk in want_k:
            rr = rsel[k[rsel] == kk]
            post = res[int(kk)][local[row_lead[rr]]]
            obs[rr], first[rr], label_first[rr] = _row_probabilities(
                post, v_by_step[step[rr]], handed_day[row_lead[rr]] < kk
            )
        i = j
    out["observable"] = np.clip(obs, 0.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # NaN where a first hand-over on that day is impossible (already handed over, or age 0)
        out["handoff"] = np.clip(np.where(first > 0, label_first / first, np.nan), 0.0, 1.0)
        if definition is not None:
            # The row exists because its age was sampled (probability p, independent of the lead's path:
            # label law = observable) or because the lead's first hand-over is at as_of (only then, when the
            # age was not sampled). The features cannot tell which (the hand-over event is stamped at
            # as_of, features use what is strictly before), so the exact probability is the mixture.
            p = age_probability(definition, k) if definition.ages_days else np.zeros(len(k))
            f = first if definition.at_handoff else np.zeros(len(k))
            den = p + (1 - p) * f
            num = p * obs + (1 - p) * np.where(f > 0, label_first, 0.0)
            out["training"] = np.clip(np.where(den > 0, num / den, np.nan), 0.0, 1.0)

    # hidden: true (fit, intent) on day k from the run-length encoded path
    hs = _read(data_dir / "ground_truth" / "hidden_states.parquet", ids)
    hl = np.searchsorted(uniq, hs["lead_id"].to_numpy(dtype=str))
    hkey = hl.astype(np.int64) * 4096 + hs["from_day"].to_numpy().astype(np.int64)
    o = np.argsort(hkey, kind="stable")
    hkey = hkey[o]
    fit_c = pd.Categorical(hs["fit"], categories=FITS).codes[o]
    int_c = pd.Categorical(hs["intent"], categories=INTENTS).codes[o]  # resolved -> -1
    hid = np.full(len(rows), np.nan)
    kk = np.clip(k, 0, 4095)
    pos = np.searchsorted(hkey, row_lead.astype(np.int64) * 4096 + kk, side="right") - 1
    valid = (pos >= 0) & (k >= 0) & known[row_lead]
    valid[valid] &= (hkey[pos[valid]] // 4096) == row_lead[valid]
    good = valid.copy()
    good[valid] &= int_c[pos[valid]] >= 0
    hid[good] = v_by_step[step[good], fit_c[pos[good]], int_c[pos[good]]]
    out["hidden"] = hid
    return out
