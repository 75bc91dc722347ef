"""`leadscore export`: the service's store (leads, events, feedback as outcomes) as a dataset directory in
the canonical layout, which `train` and `load_dataset` read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leadscore.cli.common import console, fail, utc_moment


def export(
    out: Annotated[
        Path, typer.Option(help="Directory to write leads/events/outcomes parquet and dataset.json.")
    ],
    database_url: Annotated[
        str | None, typer.Option(help="The store to export (default: LEADSCORE_DATABASE_URL).")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Export what was known at this moment (ISO-8601; default: now). It becomes snapshot_at."
        ),
    ] = None,
) -> None:
    """Write the store as a dataset: what applications sent through the API is training data."""
    import sqlalchemy as sa

    from leadscore.features.writing import write_dataset
    from leadscore.serve import db
    from leadscore.serve.export import store_dataset
    from leadscore.settings import get_settings

    url = database_url or get_settings().database_url
    moment = utc_moment(as_of).to_pydatetime() if as_of else None
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        fail(f"--database-url: not a database URL: {url!r}")
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        fail(f"no store at {shown}: the file does not exist")
    try:
        engine = db.make_engine(url)
    except ValueError as e:
        fail(f"--database-url: {e}")
    try:
        with console.status("reading the store..."):
            if not sa.inspect(engine).has_table("leads"):
                fail(f"{shown} holds no Leadscore store (no leads table): nothing to export")
            dataset = store_dataset(engine, moment)
    except sa.exc.OperationalError as e:
        fail(f"cannot read the store at {shown}: {type(e.orig).__name__}")
    finally:
        engine.dispose()
    write_dataset(dataset, out)
    console.print(
        f"exported {len(dataset.leads):,} leads, {len(dataset.events):,} events and "
        f"{len(dataset.outcomes):,} outcomes as of {dataset.snapshot_at} to {out}"
    )
    for note in dataset.notes:
        console.print(f"  {note}")
