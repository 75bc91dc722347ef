"""`leadscore.spark` and the pyfunc under `mlflow.pyfunc.spark_udf` give exactly what `leadscore score`
gives, on a real local Spark (one core, one session for the module) in a non-UTC session time zone, with
timestamps as strings and as `TimestampType`, exact duplicate events and leads without events."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pandas as pd
import pytest

# pyspark 4.3 warns that it does not fully support pandas 3; the results are checked exactly below
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
SESSION_TZ = "America/New_York"  # Spark hands timestamps to Python as naive times in this zone
N_LEADS = 240


def _spark_or_skip():
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'leadscore[spark]')")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("no Java runtime (Spark needs Java 17; .ci/system-deps.sh installs it)")


@pytest.fixture(scope="module")
def spark():
    _spark_or_skip()
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers run this interpreter, with leadscore
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("leadscore-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", SESSION_TZ)
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def small(demo_dir, tmp_path_factory):
    """A small dataset cut from the demo data, with exact duplicate events and leads without events."""
    leads = pd.read_parquet(demo_dir / "leads.parquet").iloc[:N_LEADS]
    events = pd.read_parquet(demo_dir / "events.parquet")
    events = events[events["lead_id"].isin(leads["lead_id"])]
    silent = leads["lead_id"].iloc[::40]  # 6 leads with no events at all: null after a left join
    events = events[~events["lead_id"].isin(silent)]
    dups = events.sample(60, random_state=0)  # exact copies, as real exports hold
    events = pd.concat([events, dups]).sample(frac=1.0, random_state=1).reset_index(drop=True)
    out = tmp_path_factory.mktemp("spark") / "data"
    out.mkdir()
    leads.to_parquet(out / "leads.parquet", index=False)
    events.to_parquet(out / "events.parquet", index=False)
    meta = json.loads((demo_dir / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({"snapshot_at": meta["snapshot_at"]}))
    return out, pd.Timestamp(meta["snapshot_at"]), len(dups), len(silent)


@pytest.fixture(scope="module")
def expected(trained, small):
    """What `leadscore score` writes for the small dataset, by lead id."""
    _spark_or_skip()
    from typer.testing import CliRunner

    from leadscore.cli.main import app

    data, _, _, _ = small
    out = data.parent / "local.parquet"
    result = CliRunner().invoke(app, ["score", "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out).set_index("lead_id").sort_index()


def _frames(spark, data, typed: bool):
    from pyspark.sql import functions as F

    leads = spark.read.parquet(str(data / "leads.parquet"))
    events = spark.read.parquet(str(data / "events.parquet"))
    if typed:  # ISO strings with offsets parsed by Spark into TimestampType
        leads = leads.withColumn("created_at", F.to_timestamp("created_at"))
        events = events.withColumn("timestamp", F.to_timestamp("timestamp"))
    return leads, events


@pytest.mark.parametrize("typed", [False, True], ids=["string-times", "TimestampType"])
def test_spark_score_is_leadscore_score(spark, small, expected, typed):
    from pyspark.sql import functions as F

    from leadscore import spark as ls

    # given the leads and events (with duplicates and silent leads) as Spark tables in a non-UTC session
    data, snapshot, n_dups, n_silent = small
    assert n_dups > 0 and n_silent > 0
    leads, events = _frames(spark, data, typed)
    if typed:
        assert dict(leads.dtypes)["created_at"] == "timestamp"
    # when scoring them on Spark with the champion, as of the snapshot
    scored = ls.score(spark, leads, events, "models:/leadscore@champion", snapshot, partitions=3)
    got = scored.withColumn("as_of", F.unix_millis("as_of")).toPandas().set_index("lead_id").sort_index()
    # then it has exactly the columns and values of `leadscore score`, lead by lead
    assert list(got.columns) == list(expected.columns)
    assert got.index.tolist() == expected.index.tolist() and len(got) == N_LEADS
    assert (got["as_of"] == snapshot.value // 1_000_000).all()
    for column in expected.columns.drop("as_of"):
        want = expected[column].astype(object).where(expected[column].notna(), None).tolist()
        have = got[column].astype(object).where(got[column].notna(), None).tolist()
        assert have == want, column


def _reasons(row) -> list[tuple[str, int, str]]:
    """A `leadscore score` row's reasons, positive then negative, as (feature, points, text)."""
    out = []
    for side in ("pos", "neg"):
        k = 1
        while f"{side}_{k}_feature" in row.index:
            if (
                row[f"{side}_{k}_feature"] is not None
                and row[f"{side}_{k}_feature"] == row[f"{side}_{k}_feature"]
            ):
                out.append(
                    (row[f"{side}_{k}_feature"], int(row[f"{side}_{k}_points"]), row[f"{side}_{k}_text"])
                )
            k += 1
    return out


def test_spark_udf_is_leadscore_score(spark, small, expected):
    import mlflow

    from leadscore import spark as ls

    # given the pyfunc's input built on Spark from TimestampType columns (duplicates, silent leads)
    data, snapshot, _, _ = small
    leads, events = _frames(spark, data, typed=True)
    frame = ls.pyfunc_input(leads, events, snapshot)
    # when the registered champion scores it through spark_udf, its columns taken from the signature
    udf = mlflow.pyfunc.spark_udf(spark, "models:/leadscore@champion", env_manager="local")
    got = frame.select(udf().alias("s")).select("s.*").toPandas().set_index("lead_id").sort_index()
    # then probabilities, grades, handoff decisions and reasons are exactly those of `leadscore score`
    assert got.index.tolist() == expected.index.tolist()
    assert got["probability"].tolist() == expected["probability"].tolist()
    assert got["score"].tolist() == expected["score"].tolist()
    assert got["grade"].tolist() == expected["grade"].tolist()
    assert got["qualified"].tolist() == expected["qualified"].tolist()
    assert got["insight"].tolist() == expected["insight"].fillna("").tolist()
    assert (got["as_of"].map(pd.Timestamp) == snapshot).all()
    for lead_id, row in expected.iterrows():
        reasons = [(r["feature"], r["points"], r["text"]) for r in got.at[lead_id, "reasons"]]
        assert reasons == _reasons(row), lead_id


def test_score_engine_spark_writes_what_leadscore_score_writes(spark, small, expected):
    from typer.testing import CliRunner

    from leadscore.cli.main import app

    # given the small dataset directory
    data, _, _, _ = small
    out = data.parent / "spark.parquet"
    # when `leadscore score --engine spark` scores it (on the module's session)
    result = CliRunner().invoke(app, ["score", "--data", str(data), "--out", str(out), "--engine", "spark"])
    assert result.exit_code == 0, result.output
    # then its Parquet part files hold exactly the local command's table: columns, types and values
    got = pd.read_parquet(out).set_index("lead_id").sort_index()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert "grades A" in result.output
