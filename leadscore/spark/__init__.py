"""Leadscore on Apache Spark (the optional extra `spark`): batch scoring and feature tables past one
machine, and the input the MLflow pyfunc takes under `mlflow.pyfunc.spark_udf`. docs/scale.md says how
to run them on a cluster.

Everything here runs the local commands' own code on lead-hash partitions (`partitions.by_lead`), each
partition validated by the loader first, so the results are the local ones value for value:

- `score`: `leadscore score`'s table (`scoring`);
- `features`: `leadscore features`' table at one moment; `training_rows`: the training table
  `leadscore train` fits on, written by `write_training_table` for `leadscore train --table` (`tables`);
- `pyfunc_input`: the registered pyfunc's input, one row per lead, for `spark_udf` (`scoring`).
"""

from leadscore.spark.partitions import optional_table, read_table, session, utc
from leadscore.spark.scoring import pyfunc_input, score
from leadscore.spark.tables import data_snapshot, features, training_rows, write_training_table

__all__ = [
    "data_snapshot",
    "features",
    "optional_table",
    "pyfunc_input",
    "read_table",
    "score",
    "session",
    "training_rows",
    "utc",
    "write_training_table",
]
