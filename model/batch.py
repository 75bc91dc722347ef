"""Batch scoring: every lead of a dataset (or every row of a feature table) scored with its top reasons.

Same numbers as the API: features come from `features.frames` (the code path training uses, which equals
the live path), scores from `ScoringModel.explain`, and reasons from `model.reasons.reason_arrays`, the
one implementation the API uses too: contributions for a whole chunk at once, the top reason groups and
their strongest members picked by one compiled pass, sentences rendered once per distinct (feature, value)
and cached on the model.

Output (Parquet or CSV), one row per lead: lead_id, as_of, probability, score, grade, qualified (handed over:
at or above the threshold, or drawn for exploration), explored, propensity (`model.exploration`), insight,
then for k = 1..N `pos_k_feature`, `pos_k_points`, `pos_k_text` (strongest positive reason first) and
`neg_k_feature`, `neg_k_points`, `neg_k_text`. Empty slots (fewer than N reasons of at least one point)
are null. Last, `out_of_range` (the features whose value lies outside the range the model learned from,
joined by ", ") and `out_of_range_text` (why, one sentence each, joined by "; "), null when there is none;
those values are never reasons (`model.ranges`).

The files (a flat feature table read in chunks, the output written atomically) are in `batch_files.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from leadscore.features import schema as S
from leadscore.features.frames import iter_feature_chunks
from leadscore.features.loading import Dataset
from leadscore.model.batch_files import OutputWriter, check_out, table_chunks, table_rows
from leadscore.model.exploration import NONE, Exploration
from leadscore.model.policy import GRADES
from leadscore.model.reason_groups import TOP_N
from leadscore.model.reasons import reason_arrays
from leadscore.model.scoring import ScoringModel
from leadscore.model.sentences import SentenceCache

CHUNK_LEADS = 200_000


@dataclass(frozen=True)
class BatchSummary:
    n_rows: int
    out: Path
    as_of: pd.Timestamp | None
    grades: dict[str, int]
    n_qualified: int


def score_chunk(
    model: ScoringModel,
    values: Mapping[str, np.ndarray],
    lead_ids: np.ndarray,
    as_of: np.ndarray,
    sentences: SentenceCache | None = None,
    top_n: int = TOP_N,
    exploration: Exploration = NONE,
) -> pa.Table:
    """One chunk of rows scored: the output columns as an Arrow table."""
    sentences = sentences or model.sentences
    ex = model.explain(values)
    p = ex.probability
    n = len(p)
    handed, explored, propensity = model.handoff(p, lead_ids, exploration)
    cols: dict[str, pa.Array] = {
        "lead_id": pa.array(np.asarray(lead_ids, dtype=object), pa.string()),
        "as_of": pa.array(np.asarray(as_of, dtype="datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
        "probability": pa.array(p, pa.float64()),
        "score": pa.array(np.round(100 * p).astype(np.int32)),
        "grade": pa.array(np.asarray(model.policy.grade(p), dtype=object), pa.string()),
        "qualified": pa.array(handed),
        "explored": pa.array(explored),
        "propensity": pa.array(propensity, pa.float64()),
        "insight": pa.array(model.insights.of(values, n), pa.string()),
    }
    names = model.encoder.features
    checks = model.checks
    outside = checks.outside(ex.X)
    t = reason_arrays(
        ex.contributions,
        ex.X,
        model.encoder,
        {name: values[name] for name in model.encoder.vocab},
        top_n,
        sentences,
        checks.hidden(ex.X, outside),
    )
    features = np.array(names, dtype=object)
    for side, first in (("pos", 0), ("neg", top_n)):
        for k in range(top_n):
            s, m = first + k, t.ok[:, first + k]
            cols[f"{side}_{k + 1}_feature"] = pa.array(
                np.where(m, features[t.feature[:, s]], None), pa.string()
            )
            cols[f"{side}_{k + 1}_points"] = pa.array(t.points[:, s], pa.int32(), mask=~m)
            cols[f"{side}_{k + 1}_text"] = pa.array(t.text[:, s], pa.string())
    flagged, messages = checks.messages(ex.X, outside, model.display)
    cols["out_of_range"] = pa.array(flagged, pa.string())
    cols["out_of_range_text"] = pa.array(messages, pa.string())
    return pa.table(cols)


def lead_rows(dataset: Dataset, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per lead created strictly before as_of, in the dataset's order."""
    created = dataset.leads[S.CREATED_AT]
    ids = dataset.leads[S.LEAD_ID][(created < as_of).to_numpy()]
    return pd.DataFrame(
        {
            S.LEAD_ID: ids.to_numpy(dtype=object),
            "as_of": pd.Series(as_of, index=range(len(ids))).astype("datetime64[ms, UTC]"),
        }
    )


def score_dataset(
    dataset: Dataset,
    model: ScoringModel,
    out: Path,
    as_of: pd.Timestamp | None = None,
    top_n: int = TOP_N,
    chunk_leads: int = CHUNK_LEADS,
    progress: Callable[[int, int], None] | None = None,
    exploration: Exploration = NONE,
) -> BatchSummary:
    """Score every lead of `dataset` created before `as_of` (default: the dataset's snapshot) into `out`.

    `progress(done, total)` is called after each chunk.
    """
    out = Path(out)
    check_out(out)
    moment = dataset.snapshot_at if as_of is None else as_of
    rows = lead_rows(dataset, moment)
    return _run(
        model,
        dataset_chunks(dataset, rows, chunk_leads),
        len(rows),
        out,
        moment,
        top_n,
        progress,
        exploration,
    )


def dataset_chunks(
    dataset: Dataset, rows: pd.DataFrame, chunk_leads: int = CHUNK_LEADS
) -> Iterator[tuple[np.ndarray, Mapping[str, np.ndarray], np.ndarray, np.ndarray]]:
    """(positions, features, lead ids, as_of) of `rows` (`lead_rows`), a chunk of leads at a time: what
    `score_chunk` scores (here, and per lead-hash partition in `leadscore.spark`)."""
    as_of_ms = rows["as_of"].to_numpy(dtype="datetime64[ms]")
    ids = rows[S.LEAD_ID].to_numpy(dtype=object)
    for pos, values in iter_feature_chunks(dataset, rows, chunk_leads):
        yield pos, values, ids[pos], as_of_ms[pos]


def _run(
    model: ScoringModel,
    chunks: Iterator[tuple[np.ndarray, Mapping[str, np.ndarray], np.ndarray, np.ndarray]],
    total: int,
    out: Path,
    moment: pd.Timestamp | None,
    top_n: int,
    progress: Callable[[int, int], None] | None,
    exploration: Exploration = NONE,
) -> BatchSummary:
    writer, sentences = OutputWriter(out), model.sentences
    done, n_qualified = 0, 0
    grades: dict[str, int] = dict.fromkeys(GRADES, 0)
    if progress:
        progress(0, total)
    try:
        for pos, values, ids, as_of in chunks:
            table = score_chunk(model, values, ids, as_of, sentences, top_n, exploration)
            writer.write(table)
            done += len(pos)
            n_qualified += int(np.sum(table["qualified"].to_numpy()))
            g, c = np.unique(table["grade"].to_numpy(zero_copy_only=False).astype(str), return_counts=True)
            for grade, count in zip(g, c, strict=False):
                grades[str(grade)] = grades.get(str(grade), 0) + int(count)
            if progress:
                progress(done, total)
    except BaseException:
        writer.abort()
        raise
    writer.close(empty_table(model, top_n))
    return BatchSummary(done, out, moment, grades, n_qualified)


def empty_table(model: ScoringModel, top_n: int = TOP_N) -> pa.Table:
    """The output's columns, no rows."""
    values = {
        name: np.empty(0, dtype=object if name in model.encoder.vocab else np.float64)
        for name in model.encoder.features
    }
    return score_chunk(
        model, values, np.empty(0, dtype=object), np.empty(0, dtype="datetime64[ms]"), top_n=top_n
    )


def score_table(
    path: Path,
    model: ScoringModel,
    out: Path,
    as_of: pd.Timestamp | None = None,
    top_n: int = TOP_N,
    chunk_rows: int = CHUNK_LEADS,
    progress: Callable[[int, int], None] | None = None,
    exploration: Exploration = NONE,
) -> BatchSummary:
    """Score each row of a feature table file. Ids come from `lead_id` (else the 1-based row number), the
    moment from an `as_of` column when there is one (else `as_of`, else now)."""
    path, out = Path(path), Path(out)
    check_out(out)
    total = table_rows(path)
    moment = as_of if as_of is not None else pd.Timestamp.now(tz="UTC").floor("ms")
    chunks = table_chunks(path, model.encoder, chunk_rows, moment, as_of_column=as_of is None)
    return _run(
        model, chunks, total, out, moment if as_of is not None else None, top_n, progress, exploration
    )
