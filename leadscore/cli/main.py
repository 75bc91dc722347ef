"""The `leadscore` command line: the app, its global options, and every command, registered here in the
order `leadscore --help` lists them. Each command lives in the module of its group; what they share is in
`leadscore.cli.common`. Imports run one way: main -> command modules -> common."""

from __future__ import annotations

import logging
import warnings
from typing import Annotated

import typer

from leadscore.cli import (
    champion,
    data,
    export,
    import_data,
    monitor,
    recalibrate,
    rescore,
    retrain,
    score,
    service,
    table,
    train,
)

app = typer.Typer(
    help="Leadscore: learn what a qualified lead is from sales feedback, score leads, say why.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow's generic advice (cloudpickle of a python_model, integer output columns) is not actionable here
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")


for name, command in (
    ("demo-data", data.demo_data),
    ("train", train.train),
    ("features", data.features),
    ("promote", champion.promote),
    ("rollback", champion.rollback),
    ("keys", service.keys),
    ("serve", service.serve),
    ("prune", service.prune),
    ("export", export.export),
    ("import", import_data.import_data),
    ("monitor", monitor.monitor),
    ("recalibrate", recalibrate.recalibrate),
    ("retrain", retrain.retrain),
    ("rescore", rescore.rescore),
    ("score", score.score),
    ("table", table.table),
):
    app.command(name)(command)
