"""A flat export file (CSV or Parquet) read as it is: every CSV cell a string, the dialect sniffed, a file
that is not UTF-8, a malformed line or a bad header a `Problem` with file, row and reason."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
from leadscore.features.problems import MAX_PROBLEMS_SHOWN, DataError, Problem

SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"


def sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel  # one column, or nothing to go on: plain commas


def _read_csv(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n")  # 0 = header line
        problems.append(
            Problem(
                str(path),
                line if line > 0 else None,
                None,
                f"not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}); re-export the file as UTF-8",
            )
        )
        return None
    if not text.strip():
        problems.append(Problem(str(path), None, None, "the file is empty"))
        return None
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES:
        sample = sample[: sample.rfind("\n") + 1] or sample
    dialect = sniff_dialect(sample)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        rows = list(reader)
    except csv.Error as e:
        problems.append(Problem(str(path), reader.line_num - 1 or None, None, f"malformed CSV: {e}"))
        return None
    rows = [r for r in rows if r]  # blank lines carry nothing
    header, body = rows[0], rows[1:]
    _check_header(header, str(path), problems)
    width = len(header)
    for i, r in enumerate(body):
        if len(r) != width:
            problems.append(
                Problem(
                    str(path),
                    i + 1,
                    None,
                    f"{len(r)} fields where the header has {width} "
                    f"(delimiter {dialect.delimiter!r}); check quoting",
                )
            )
            if len(problems) > MAX_PROBLEMS_SHOWN:
                break
    if problems:
        return None
    return (
        pd.DataFrame(body, columns=header, dtype=object)
        if body
        else pd.DataFrame(columns=header, dtype=object)
    )


def _check_header(header: list[str], file: str, problems: list[Problem]) -> None:
    seen = set()
    for j, name in enumerate(header):
        if not name.strip():
            problems.append(Problem(file, None, f"#{j + 1}", "column without a name in the header"))
        elif name in seen:
            problems.append(Problem(file, None, name, "column name appears twice in the header"))
        seen.add(name)


def read_raw(path: Path | str) -> pd.DataFrame:
    """The file's cells, unparsed (CSV: str; Parquet: as stored). Raises `DataError` if it cannot be read."""
    path = Path(path)
    problems: list[Problem] = []
    if not path.exists():
        raise DataError([Problem(str(path), None, None, "no such file")])
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except Exception as e:
            raise DataError([Problem(str(path), None, None, f"not a readable Parquet file: {e}")]) from e
        _check_header([str(c) for c in df.columns], str(path), problems)
        df.columns = [str(c) for c in df.columns]
    else:
        df = _read_csv(path, problems)
    if problems:
        raise DataError(problems)
    if len(df) == 0:
        raise DataError([Problem(str(path), None, None, "no data rows under the header")])
    return df
