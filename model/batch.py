"""Batch scoring: every lead of a dataset (or every row of a feature table) scored with its top reasons.

Same numbers as the API: features come from `features.frames` (the code path training uses, which equals
the live path), scores from `ScoringModel.explain`, and reasons follow `model.reasons.reasons_for_row`
exactly (reason groups summed in the same order, same tie-breaking, same strongest member, points and
sentences). What differs is how: no Python per
row. Contributions are computed for a whole chunk at once, the top reasons are picked with
`np.argpartition` and sentences are rendered once per distinct (feature, value) and cached.

Output (Parquet or CSV), one row per lead: lead_id, as_of, probability, score, grade, qualified, insight,
then for k = 1..N `pos_k_feature`, `pos_k_points`, `pos_k_text` (strongest positive reason first) and
`neg_k_feature`, `neg_k_points`, `neg_k_text`. Empty slots (fewer than N reasons above the minimum impact)
are null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscore.features import catalog, schema as S
from leadscore.features.frames import iter_feature_chunks
from leadscore.features.loading import Dataset
from leadscore.model.reasons import MIN_ABS_IMPACT, POINTS_PER_DOUBLING, TOP_N, display_value, groups
from leadscore.model.scoring import ScoringModel

CHUNK_LEADS = 200_000
FORMATS = (".parquet", ".csv")


class BatchInputError(ValueError):
    """The input cannot be scored; the message names the file or column and the reason."""


@dataclass(frozen=True)
class BatchSummary:
    n_rows: int
    out: Path
    as_of: pd.Timestamp | None
    grades: dict[str, int]
    n_qualified: int


def smallest_k(K: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k smallest values ordered by (value, index).

    Equal to `np.argsort(K, axis=1, kind="stable")[:, :k]`, at the cost of an argpartition: rows where a
    tie straddles the k-th place (argpartition may pick either) are redone with the stable sort.
    """
    n, F = K.shape
    k = min(k, F)
    if k == 0:
        return np.empty((n, 0), dtype=np.int64)
    if k >= F:
        return np.argsort(K, axis=1, kind="stable")
    idx = np.argpartition(K, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(K, idx, axis=1)
    kth = vals.max(axis=1)
    tied = (K <= kth[:, None]).sum(axis=1) > k
    order = np.lexsort((idx, vals))
    idx = np.take_along_axis(idx, order, axis=1)
    if tied.any():
        idx[tied] = np.argsort(K[tied], axis=1, kind="stable")[:, :k]
    return idx


def group_sums(C: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """(rows, groups): each reason group's contribution, summed in feature order exactly as
    `reasons_for_row` does (np.add.at over the features), so ties and thresholds fall the same way."""
    names, index = groups(features)
    G = np.zeros((C.shape[0], len(names)), dtype=np.float64)
    for j, g in enumerate(index):
        G[:, g] += C[:, j]
    return G


def top_reasons(G: np.ndarray, top_n: int = TOP_N) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pos_idx, pos_ok, neg_idx, neg_ok): column indices of G (reason groups) of the top positive and
    negative reasons per row.

    As `reasons_for_row`: positives in the order of a stable argsort of -G, negatives in the reverse of
    it (most negative first, ties: higher index first); only |impact| > MIN_ABS_IMPACT counts.
    """
    F = G.shape[1]
    pos = smallest_k(-G, top_n)
    neg = (F - 1) - smallest_k(G[:, ::-1], top_n)
    pos_ok = np.take_along_axis(G, pos, axis=1) > MIN_ABS_IMPACT
    neg_ok = np.take_along_axis(G, neg, axis=1) < -MIN_ABS_IMPACT
    return pos, pos_ok, neg, neg_ok


def strongest_members(C: np.ndarray, features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(up, down), each (rows, groups): the feature of each group that pushes hardest up (largest
    contribution) and down (smallest); the first one on ties, as np.argmax in `reasons_for_row`."""
    names, index = groups(features)
    up = np.empty((C.shape[0], len(names)), dtype=np.int64)
    down = np.empty_like(up)
    for g in range(len(names)):
        members = np.flatnonzero(index == g)
        sub = C[:, members]
        up[:, g] = members[np.argmax(sub, axis=1)]
        down[:, g] = members[np.argmax(-sub, axis=1)]
    return up, down


class SentenceCache:
    """The reason sentence of (feature, value), rendered once per distinct pair."""

    def __init__(self, model: ScoringModel):
        self.encoder = model.encoder
        self.cache: dict[tuple[int, object], str] = {}

    def _render(self, j: int, value: object) -> str:
        name = self.encoder.features[j]
        spec = catalog.BY_NAME.get(name)
        return spec.sentence(value) if spec is not None else f"{name}: {value}"

    def texts(self, j: int, x: np.ndarray, raw: np.ndarray | None) -> np.ndarray:
        """Sentences for feature j at encoded values x (and raw categorical values), as an object array."""
        name = self.encoder.features[j]
        out = np.empty(len(x), dtype=object)
        if name in self.encoder.vocab:
            # display value: the raw text when it is a string, else the label of the code (missing -> None)
            if raw is None:
                raw = np.full(len(x), None, dtype=object)
            codes, uniques = pd.factorize(pd.Series(raw, dtype=object), use_na_sentinel=True)
            # Rows whose raw value is not a string (missing, or an odd type) display the code's label.
            rest = codes < 0
            for u, value in enumerate(uniques):
                sel = codes == u
                if isinstance(value, str):
                    out[sel] = self._cached(j, ("s", value), value)
                else:
                    rest |= sel
            if rest.any():
                xc = x[rest]
                ux, inv = np.unique(xc, return_inverse=True)
                rendered = np.array([self._cached(j, ("c", float(c)), display_value(self.encoder, name, c))
                                     for c in ux], dtype=object)
                out[rest] = rendered[inv.ravel()]
            return out
        nan = np.isnan(x)
        if nan.any():
            out[nan] = self._cached(j, ("nan",), None)
        ok = ~nan
        if ok.any():
            ux, inv = np.unique(x[ok], return_inverse=True)
            rendered = np.array([self._cached(j, float(v), display_value(self.encoder, name, v)) for v in ux],
                                dtype=object)
            out[ok] = rendered[inv.ravel()]
        return out

    def _cached(self, j: int, key: object, value: object) -> str:
        text = self.cache.get((j, key))
        if text is None:
            text = self.cache[(j, key)] = self._render(j, value)
        return text


def _insights(model: ScoringModel, values: dict[str, np.ndarray], n: int) -> np.ndarray:
    """`ScoringModel.insight` for every row: the categorical value whose qualification rate is furthest
    (beyond 1.5x either way) from the overall rate, as one sentence; null when there is none."""
    ins = model.info.get("insights") or {}
    overall = ins.get("overall")
    best = np.zeros(n)
    text = np.full(n, None, dtype=object)
    if not overall:
        return text
    threshold = np.log(1.5)
    for feature, rates in (ins.get("by_value") or {}).items():
        if feature not in values or not rates:
            continue
        col = pd.Series(values[feature], dtype=object)
        rate = col.map(lambda v: rates.get(v) if isinstance(v, str) else None).to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            strength = np.abs(np.log(rate / overall))
        better = (strength > threshold) & (strength > best) & ~np.isnan(strength)
        if not better.any():
            continue
        best = np.where(better, strength, best)
        label = feature.replace("_", " ")
        sentences = {v: (f"Leads with {label} {v.replace('_', ' ')} qualify at {r * 100:.0f} % "
                         f"against {overall * 100:.0f} % overall") for v, r in rates.items()}
        text[better] = col[better].map(sentences).to_numpy(dtype=object)
    return text


def score_chunk(model: ScoringModel, values: dict[str, np.ndarray], lead_ids, as_of,
                sentences: SentenceCache | None = None, top_n: int = TOP_N) -> pa.Table:
    """One chunk of rows scored: the output columns as an Arrow table."""
    sentences = sentences or SentenceCache(model)
    ex = model.explain(values)
    p = ex.probability
    n = len(p)
    cols: dict[str, pa.Array] = {
        "lead_id": pa.array(np.asarray(lead_ids, dtype=object), pa.string()),
        "as_of": pa.array(np.asarray(as_of, dtype="datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
        "probability": pa.array(p, pa.float64()),
        "score": pa.array(np.round(100 * p).astype(np.int32)),
        "grade": pa.array(np.asarray(model.policy.grade(p), dtype=object), pa.string()),
        "qualified": pa.array(np.asarray(model.policy.qualified(p), dtype=bool)),
        "insight": pa.array(_insights(model, values, n), pa.string()),
    }
    C = ex.contributions
    names = model.encoder.features
    G = group_sums(C, names)
    pos, pos_ok, neg, neg_ok = top_reasons(G, top_n)
    up, down = strongest_members(C, names)
    features = np.array(names, dtype=object)
    rows = np.arange(n)
    for side, idx, ok, member in (("pos", pos, pos_ok, up), ("neg", neg, neg_ok, down)):
        impact = np.take_along_axis(G, idx, axis=1)
        pts = np.round(impact * POINTS_PER_DOUBLING / math.log(2)).astype(np.int64)
        feat_idx = np.take_along_axis(member, idx, axis=1)
        for k in range(top_n):
            if k < idx.shape[1]:
                j, m = feat_idx[:, k], ok[:, k]
                feat = np.where(m, features[j], None)
                text = np.full(n, None, dtype=object)
                for f in np.unique(j[m]):
                    sel = m & (j == f)
                    name = names[f]
                    raw = values[name][sel] if name in model.encoder.vocab else None
                    text[sel] = sentences.texts(int(f), ex.X[rows[sel], f], raw)
                pts_k = pa.array(pts[:, k], pa.int32(), mask=~m)
            else:  # fewer reason groups than reason slots
                feat = text = np.full(n, None, dtype=object)
                pts_k = pa.nulls(n, pa.int32())
            cols[f"{side}_{k + 1}_feature"] = pa.array(feat, pa.string())
            cols[f"{side}_{k + 1}_points"] = pts_k
            cols[f"{side}_{k + 1}_text"] = pa.array(text, pa.string())
    return pa.table(cols)


class _Writer:
    """Streams Arrow tables into a Parquet or CSV file; the file appears under its name only when complete."""

    def __init__(self, out: Path):
        self.final, self.writer = out, None
        self.out = out.with_name(f".{out.name}.partial")

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            if self.final.suffix == ".csv":
                import pyarrow.csv as pcsv

                self.writer = pcsv.CSVWriter(str(self.out), table.schema)
            else:
                import pyarrow.parquet as pq

                self.writer = pq.ParquetWriter(str(self.out), table.schema, compression="zstd")
        self.writer.write_table(table)

    def close(self, empty: pa.Table) -> None:
        if self.writer is None:  # no rows: still write a file with the columns
            self.write(empty)
        self.writer.close()
        self.out.replace(self.final)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.out.unlink(missing_ok=True)


def check_out(out: Path) -> None:
    if out.suffix not in FORMATS:
        raise BatchInputError(f"--out: {out} must end in .parquet or .csv")


def lead_rows(dataset: Dataset, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per lead created strictly before as_of, in the dataset's order."""
    created = dataset.leads[S.CREATED_AT]
    ids = dataset.leads[S.LEAD_ID][(created < as_of).to_numpy()]
    return pd.DataFrame({S.LEAD_ID: ids.to_numpy(dtype=object),
                         "as_of": pd.Series(as_of, index=range(len(ids))).astype("datetime64[ms, UTC]")})


def score_dataset(dataset: Dataset, model: ScoringModel, out: Path, as_of: pd.Timestamp | None = None,
                  top_n: int = TOP_N, chunk_leads: int = CHUNK_LEADS,
                  progress: Callable[[int, int], None] | None = None) -> BatchSummary:
    """Score every lead of `dataset` created before `as_of` (default: the dataset's snapshot) into `out`.

    `progress(done, total)` is called after each chunk.
    """
    out = Path(out)
    check_out(out)
    moment = dataset.snapshot_at if as_of is None else as_of
    rows = lead_rows(dataset, moment)
    as_of_ms = rows["as_of"].to_numpy(dtype="datetime64[ms]")
    ids = rows[S.LEAD_ID].to_numpy(dtype=object)
    chunks = ((pos, values, ids[pos], as_of_ms[pos]) for pos, values in iter_feature_chunks(dataset, rows, chunk_leads))
    return _run(model, chunks, len(rows), out, moment, top_n, progress)


def _run(model: ScoringModel, chunks: Iterator, total: int, out: Path, moment, top_n: int,
         progress: Callable[[int, int], None] | None) -> BatchSummary:
    writer, sentences = _Writer(out), SentenceCache(model)
    done, n_qualified, grades = 0, 0, dict.fromkeys(("A", "B", "C", "D"), 0)
    if progress:
        progress(0, total)
    try:
        for pos, values, ids, as_of in chunks:
            table = score_chunk(model, values, ids, as_of, sentences, top_n)
            writer.write(table)
            done += len(pos)
            n_qualified += int(np.sum(table["qualified"].to_numpy()))
            g, c = np.unique(table["grade"].to_numpy(zero_copy_only=False).astype(str), return_counts=True)
            for grade, count in zip(g, c):
                grades[str(grade)] = grades.get(str(grade), 0) + int(count)
            if progress:
                progress(done, total)
    except BaseException:
        writer.abort()
        raise
    writer.close(_empty_table(model, top_n))
    return BatchSummary(done, out, moment, grades, n_qualified)


def _empty_table(model: ScoringModel, top_n: int) -> pa.Table:
    values = {name: np.empty(0, dtype=object if name in model.encoder.vocab else np.float64)
              for name in model.encoder.features}
    return score_chunk(model, values, np.empty(0, dtype=object), np.empty(0, dtype="datetime64[ms]"), top_n=top_n)


# --- a flat feature table (e.g. `leadscore features` output, or a CRM export for a `leadscore table` model)
MISSING_MARKERS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")


def _table_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    elif path.suffix == ".csv":
        yield from pd.read_csv(path, dtype=str, keep_default_na=False, na_values=list(MISSING_MARKERS),
                               chunksize=chunk_rows)
    else:
        raise BatchInputError(f"--data: {path} is neither a directory nor a .parquet or .csv file")


def _table_values(df: pd.DataFrame, model: ScoringModel, path: Path, first_row: int) -> dict[str, np.ndarray]:
    missing = [f for f in model.encoder.features if f not in df.columns]
    if missing:
        raise BatchInputError(f"{path}: missing column(s) the model needs: {', '.join(missing)}")
    values = {}
    for name in model.encoder.features:
        col = df[name]
        if name in model.encoder.vocab:
            values[name] = col.astype(object).where(col.notna(), None).map(
                lambda v: v if v is None or isinstance(v, str) else str(v)).to_numpy(dtype=object)
        else:
            num = pd.to_numeric(col, errors="coerce")
            bad = num.isna() & col.notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise BatchInputError(f"{path}, row {first_row + i + 1}, column {name!r}: "
                                      f"not a number: {str(col.iloc[i])[:40]!r}")
            values[name] = num.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def score_table(path: Path, model: ScoringModel, out: Path, as_of: pd.Timestamp | None = None,
                top_n: int = TOP_N, chunk_rows: int = CHUNK_LEADS,
                progress: Callable[[int, int], None] | None = None) -> BatchSummary:
    """Score each row of a feature table file. Ids come from `lead_id` (else the 1-based row number), the
    moment from an `as_of` column when there is one (else `as_of`, else now)."""
    path, out = Path(path), Path(out)
    check_out(out)
    if path.suffix not in FORMATS:
        raise BatchInputError(f"--data: {path} is neither a directory nor a .parquet or .csv file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows
    else:
        with path.open("rb") as f:
            total = max(sum(1 for _ in f) - 1, 0)
    moment = as_of if as_of is not None else pd.Timestamp.now(tz="UTC").floor("ms")

    def chunks():
        start = 0
        for df in _table_chunks(path, chunk_rows):
            values = _table_values(df, model, path, start)
            ids = (df[S.LEAD_ID].astype(str).to_numpy(dtype=object) if S.LEAD_ID in df.columns
                   else np.arange(start + 1, start + len(df) + 1).astype(str).astype(object))
            if "as_of" in df.columns and as_of is None:
                ts = pd.to_datetime(df["as_of"], utc=True, errors="coerce", format="ISO8601")
                if ts.isna().any():
                    i = int(np.flatnonzero(ts.isna().to_numpy())[0])
                    raise BatchInputError(f"{path}, row {start + i + 1}, column 'as_of': not an ISO-8601 time")
                stamps = ts.to_numpy(dtype="datetime64[ms]")
            else:
                stamps = np.full(len(df), np.datetime64(moment.tz_convert(None).to_datetime64(), "ms"))
            yield np.arange(start, start + len(df)), values, ids, stamps
            start += len(df)

    return _run(model, chunks(), total, out, moment if as_of is not None else None, top_n, progress)
