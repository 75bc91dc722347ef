"""`leadscore promote` and `leadscore rollback`: move the champion alias by hand."""

from __future__ import annotations

from typing import Annotated

import typer

from leadscore.cli.common import console, fail, setup_mlflow


def promote(version: Annotated[str, typer.Option(help="Model version to make champion.")]) -> None:
    """Make a registered version the champion (the service picks it up on its next check)."""
    from leadscore.model import registry

    setup_mlflow()
    try:
        registry.promote(version, reason="manual promotion from the command line")
    except Exception as e:  # noqa: BLE001 - MLflow raises its own types; the message is what matters
        fail(f"cannot promote version {version}: {e}")
    console.print(f"leadscore version {version} is champion")


def rollback() -> None:
    """Restore the champion that the current champion replaced."""
    from leadscore.model import registry

    setup_mlflow()
    try:
        v = registry.rollback()
    except ValueError as e:
        fail(str(e))
    console.print(f"leadscore version {v} is champion again")
