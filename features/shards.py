"""Lead-hash shards: a dataset bigger than memory processed one part at a time, with the loader's rules.

`partition` streams each table of a dataset directory (Parquet files or directories of part files, or CSV)
batch by batch and writes every row into the shard of its lead: `shard_of` hashes the lead id as the loader
reads it (a string), so a lead, its events, outcomes and selection rows all land in one shard, in their
original order. Each shard is then an ordinary dataset directory that `load_dataset` reads with exactly its
rules (duplicate events, timestamps, validation), and a lead's features and scores depend on its own rows
only, so per-shard results are the unsharded ones. `shard_merge` puts the per-shard outputs back into the
order of the leads file, so the output does not depend on the number of shards.

Peak memory is that of one shard plus one read batch; `auto_shards` picks the number from the row counts
and a memory budget (docs/scale.md, "One machine, bigger than memory").
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from leadscore.features import schema as S
from leadscore.features.checks import parse_timestamps
from leadscore.features.loading import Dataset, load_dataset
from leadscore.features.problems import DataError, Problem
from leadscore.features.reading import dictionary_codes, find_table, is_parquet, part_files

TABLES = ("leads", "events", "outcomes", "selection")
BATCH_ROWS = 1_000_000  # rows read at a time while partitioning
# peak resident bytes of `load_dataset` + features per event and per lead, and what the process needs
# besides (interpreter, libraries, a model): fitted to `leadscore features` on the 1M-lead demo data
# (30M events) unsharded and in 4 shards, 4.44 and 1.59 GB (docs/benchmarks.md, "Features in shards")
BYTES_PER_EVENT = 100
BYTES_PER_LEAD = 700
BASE_BYTES = 600 * 2**20
DEFAULT_BUDGET_GB = 4.0
CSV_BYTES_PER_ROW = 60  # a CSV's rows are not counted: its size is divided by this
_HASH_KEY = "leadscore-shards"  # 16 bytes: the key of pandas' SipHash, fixed so shards are stable


def shard_of(ids: np.ndarray, n: int) -> np.ndarray:
    """The shard (0..n-1) of each lead id (str, or None: shard 0), stable across runs and machines."""
    present = np.asarray(pd.notna(ids), dtype=bool)
    h = pd.util.hash_array(np.where(present, ids, "").astype(object), hash_key=_HASH_KEY, categorize=False)
    return np.where(present, (h % np.uint64(n)).astype(np.int64), 0)


def _rows(path: Path) -> int:
    if is_parquet(path):
        return sum(pq.ParquetFile(p).metadata.num_rows for p in part_files(path))
    return path.stat().st_size // CSV_BYTES_PER_ROW


def auto_shards(data_dir: Path, budget_gb: float = DEFAULT_BUDGET_GB) -> int:
    """ceil((events x BYTES_PER_EVENT + leads x BYTES_PER_LEAD) / (budget - BASE_BYTES)), at least 1."""
    data_dir = Path(data_dir)
    leads = find_table(data_dir, "leads")  # looked up in the loader's order: the same first problem
    need = _rows(find_table(data_dir, "events")) * BYTES_PER_EVENT + _rows(leads) * BYTES_PER_LEAD
    room = budget_gb * 1e9 - BASE_BYTES
    if room <= 0:
        raise ValueError(f"a memory budget of {budget_gb} GB leaves nothing for the data")
    return max(1, math.ceil(need / room))


def _batches(path: Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The table in batches of about BATCH_ROWS rows, in the loader's row order (CSV cells as strings)."""
    if is_parquet(path):
        for part in part_files(path):
            f = pq.ParquetFile(part)
            cols = None if columns is None else [c for c in columns if c in f.schema_arrow.names]
            for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=cols):
                yield pa.Table.from_batches([batch])
    else:
        for df in pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=BATCH_ROWS):
            yield pa.Table.from_pandas(df, preserve_index=False)


def _batch_shards(table: pa.Table, n: int) -> np.ndarray:
    if S.LEAD_ID not in table.column_names:  # the shard's loader reports the missing column
        return np.zeros(table.num_rows, dtype=np.int64)
    values, codes = dictionary_codes(table.column(S.LEAD_ID))
    per_value = np.append(shard_of(values, n), 0)  # [-1]: a missing id
    return np.asarray(per_value[codes], dtype=np.int64)


@dataclass(frozen=True)
class Partition:
    """A dataset directory split into `n` shard directories under `root` (removed by `close`)."""

    source: Path
    root: Path
    n: int
    sources: dict[str, Path]  # table name -> the source file or directory

    def shard_dir(self, k: int) -> Path:
        return self.root / f"shard-{k:05d}"

    def lead_rows(self, k: int) -> np.ndarray:
        """The 0-based row in the source leads table of each lead of shard k."""
        rows: np.ndarray = np.load(self.shard_dir(k) / "lead_rows.npy", mmap_mode="r")
        return rows

    def load(self, k: int) -> Dataset:
        """Shard k as `load_dataset` reads it; problems name the source file and row."""
        try:
            ds = load_dataset(self.shard_dir(k))
        except DataError as e:
            raise DataError([self._source_problem(p, k) for p in e.problems]) from None
        notes = tuple(n.replace(str(self.shard_dir(k)), str(self.source)) for n in ds.notes)
        return replace(ds, notes=notes)

    def _source_problem(self, p: Problem, k: int) -> Problem:
        for table, src in self.sources.items():
            if Path(p.file).parent == self.shard_dir(k) and Path(p.file).stem == table:
                row = p.row
                if row is not None:
                    row = int(_source_rows(src, self.n, k)[row - 1]) + 1
                return Problem(str(src), row, p.column, p.reason)
        return p

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _source_rows(path: Path, n: int, k: int) -> np.ndarray:
    """The 0-based source rows of shard k's rows of a table (read again only to report a problem)."""
    found, start = [], 0
    for t in _batches(path, [S.LEAD_ID]):
        found.append(start + np.flatnonzero(_batch_shards(t, n) == k))
        start += t.num_rows
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _snapshot(sources: dict[str, Path]) -> str:
    """The last timestamp of the data, parsed by the loader's rule (when dataset.json has no snapshot_at:
    each shard would otherwise take its own last timestamp)."""
    last = pd.NaT
    for table, column in (("leads", S.CREATED_AT), ("events", S.TIMESTAMP), ("outcomes", S.OUTCOME_AT)):
        if table not in sources:
            continue
        for t in _batches(sources[table], [column]):
            if column in t.column_names:
                m = parse_timestamps(t.column(column), "", column, []).max()
                last = m if pd.isna(last) or (pd.notna(m) and m > last) else last
    return str(pd.Timestamp(last).isoformat())


def partition(data_dir: Path | str, n: int, work_dir: Path | str | None = None) -> Partition:
    """Split `data_dir` into `n` lead-hash shards in a new directory under `work_dir` (default: the system's
    temporary directory); the caller closes the partition when done."""
    data_dir = Path(data_dir)
    sources = {t: p for t in TABLES if (p := find_table(data_dir, t, required=t in ("leads", "events")))}
    root = Path(tempfile.mkdtemp(prefix="leadscore-shards-", dir=work_dir))
    part = Partition(data_dir, root, n, sources)
    try:
        meta_path = data_dir / "dataset.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if not meta.get("snapshot_at"):
            meta["snapshot_at"] = _snapshot(sources)
        for k in range(n):
            part.shard_dir(k).mkdir()
            (part.shard_dir(k) / "dataset.json").write_text(json.dumps(meta))
        for table, src in sources.items():
            lead_rows = _split(src, table, part)
            if table == "leads":
                for k in range(n):
                    np.save(part.shard_dir(k) / "lead_rows.npy", np.concatenate(lead_rows[k]))
    except BaseException:
        part.close()
        raise
    return part


def _split(src: Path, table: str, part: Partition) -> list[list[np.ndarray]]:
    """Write each row of `src` into its shard's `table`.parquet; returns each shard's source rows."""
    columns = list(S.EVENT_COLUMNS) if table == "events" else None  # the only event columns loading reads
    writers: list[pq.ParquetWriter | None] = [None] * part.n
    rows: list[list[np.ndarray]] = [[np.empty(0, np.int64)] for _ in range(part.n)]
    schema, start = None, 0
    try:
        for t in _batches(src, columns):
            schema = schema or t.schema
            t = t.cast(schema)
            shard = _batch_shards(t, part.n)
            order = np.argsort(shard, kind="stable")
            bounds = np.searchsorted(shard[order], np.arange(part.n + 1))
            t = t.take(order)
            for k in range(part.n):
                a, b = bounds[k], bounds[k + 1]
                if a == b:
                    continue
                w = writers[k]
                if w is None:
                    w = writers[k] = pq.ParquetWriter(part.shard_dir(k) / f"{table}.parquet", schema)
                w.write_table(t.slice(a, b - a))
                if table == "leads":
                    rows[k].append(start + order[a:b])
            start += t.num_rows
        if schema is None:  # no rows at all: the columns still come from the file
            schema = pq.read_schema(part_files(src)[0]) if is_parquet(src) else _csv_header(src)
        for k in range(part.n):
            if writers[k] is None:  # an empty shard still has the table, with its columns
                writers[k] = pq.ParquetWriter(part.shard_dir(k) / f"{table}.parquet", schema)
    finally:
        for w in writers:
            if w is not None:
                w.close()
    return rows


def _csv_header(src: Path) -> pa.Schema:
    cols = pd.read_csv(src, dtype=str, nrows=0).columns
    return pa.schema([(str(c), pa.string()) for c in cols])
