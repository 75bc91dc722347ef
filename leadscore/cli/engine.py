"""The `--engine` and `--master` options of `leadscore score` and `leadscore features`, and what their
Spark paths share: the session (the caller's, or one of their own stopped at the end), the checks of
`--data` and `--out`, and bad data an executor's loader found, reported as the local commands report it:
exit 2 with the problems, not a Spark traceback (docs/scale.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from leadscore.cli.common import fail

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession


class Engine(StrEnum):
    """Where a command runs."""

    local = "local"
    spark = "spark"


EngineOption = Annotated[
    Engine,
    typer.Option(
        help="local: in this process. spark: on Apache Spark (extra 'spark'), same columns and values; "
        "--data a dataset directory, --out a directory of Parquet part files (docs/scale.md)."
    ),
]
MasterOption = Annotated[
    str | None,
    typer.Option(help="Spark master with --engine spark, e.g. local[*] or spark://host:7077."),
]


def check_spark_paths(data: Path, out: Path) -> None:
    """pyspark is installed, `data` a dataset directory and `out` a .parquet path (a directory of parts)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        fail("--engine spark: pyspark is not installed (pip install 'leadscore[spark]'; Spark needs Java 17)")
    if not data.is_dir():
        fail(f"--data: {data} must be a dataset directory with --engine spark")
    if out.suffix != ".parquet":
        fail(f"--out: {out} must end in .parquet with --engine spark (a directory of part files)")


def snapshot_at(data: Path) -> pd.Timestamp | None:
    """dataset.json's `snapshot_at` (UTC), if it has one, read as the loader reads it; a bad one fails
    the command naming the field."""
    from leadscore.features.loading import dataset_snapshot
    from leadscore.features.problems import DataError

    try:
        return dataset_snapshot(data)
    except DataError as e:
        fail(str(e))


@contextmanager
def spark_session(master: str | None, name: str) -> Iterator[SparkSession]:
    """The active session (a notebook's, or spark-submit's), else one of the command's own, stopped at the
    end; a missing table of the dataset directory fails the command with its name."""
    from pyspark.errors import PythonException
    from pyspark.sql import SparkSession

    from leadscore import spark as ls

    owned = SparkSession.getActiveSession() is None  # a session of the caller's stays up
    session = ls.session(master, name)
    try:
        yield session
    except FileNotFoundError as e:
        fail(str(e))
    except PythonException as e:
        problems = data_problems(str(e))
        if problems is None:
            raise
        fail(problems)
    finally:
        if owned:
            session.stop()


_DATA_ERROR = "leadscore.features.problems.DataError: "


def data_problems(text: str) -> str | None:
    """The loader's `DataError` message in the text of an executor's exception (the worker's traceback
    travels as text), or None if it holds none. Row numbers count within the lead-hash partition the
    executor validated, not within the file."""
    start = text.rfind(_DATA_ERROR)
    if start < 0:
        return None
    lines = text[start + len(_DATA_ERROR) :].splitlines()
    message = [lines[0], *(line for line in lines[1:] if line.startswith("  - "))]
    return "\n".join(message) + "\n(on Spark: rows are counted within the partition of the lead's hash)"
