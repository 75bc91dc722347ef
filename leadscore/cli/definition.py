"""The qualified-lead definition's options, shared by `leadscore train` and `leadscore features --training`
(a training table is built for one definition, and `train --table` trains for the table's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from leadscore.cli.common import fail

if TYPE_CHECKING:
    from leadscore.features.labels import QualifiedDefinition

HorizonOption = Annotated[
    int | None,
    typer.Option(min=1, help="Qualified within this many days (default 30; train --table: the table's)."),
]
AgesOption = Annotated[str | None, typer.Option(help="As-of ages in days, e.g. 1,3,7,14,30,60")]
PositiveOption = Annotated[str | None, typer.Option(help="Positive outcomes, comma-separated.")]
NegativeOption = Annotated[str | None, typer.Option(help="Negative outcomes, comma-separated.")]


def definition(
    horizon_days: int | None, ages: str | None, positive: str | None, negative: str | None
) -> QualifiedDefinition:
    """The definition of the options given, the defaults for the others."""
    from leadscore.features.labels import QualifiedDefinition

    kw: dict = {}
    if horizon_days is not None:
        kw["horizon_days"] = horizon_days
    if positive:
        kw["positive"] = tuple(positive.split(","))
    if negative:
        kw["negative"] = tuple(negative.split(","))
    try:
        if ages:
            kw["ages_days"] = tuple(int(a) for a in ages.split(","))
        return QualifiedDefinition(**kw)
    except ValueError as e:
        fail(f"--ages: whole days, comma-separated, not {ages!r}" if "int()" in str(e) else str(e))


def given(
    horizon_days: int | None, ages: str | None, positive: str | None, negative: str | None
) -> list[str]:
    """The definition options given on the command line."""
    named = {"--horizon-days": horizon_days, "--ages": ages, "--positive": positive, "--negative": negative}
    return [name for name, value in named.items() if value is not None]
