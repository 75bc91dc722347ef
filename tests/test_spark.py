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


# --- the training table and the features on Spark (leadscore.spark.tables), and train --table
TRAIN_LEADS = 300


@pytest.fixture(scope="module")
def with_outcomes(demo_dir, tmp_path_factory):
    """Leads with events and outcomes cut from the demo data, with exact duplicate events, leads without
    events and (most of them) without outcomes, a selection table of hand-overs and leads never handed
    over, and no dataset.json (so the snapshot is the data's last timestamp)."""
    leads = pd.read_parquet(demo_dir / "leads.parquet").iloc[:TRAIN_LEADS]
    ids = leads["lead_id"]
    events = pd.read_parquet(demo_dir / "events.parquet")
    events = events[events["lead_id"].isin(ids) & ~events["lead_id"].isin(ids.iloc[::40])]
    events = pd.concat([events, events.sample(60, random_state=0)]).sample(frac=1.0, random_state=1)
    outcomes = pd.read_parquet(demo_dir / "outcomes.parquet")
    outcomes = outcomes[outcomes["lead_id"].isin(ids)]
    # the data's last moment: one late verdict, in one lead-hash partition (the snapshot, and so the
    # censoring of every lead, must be the whole data's, not each partition's)
    late = pd.to_datetime(events["timestamp"], utc=True, format="ISO8601").max() + pd.Timedelta(days=45)
    last = {"lead_id": ids.iloc[7], "outcome": "lost", "at": late.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    outcomes = pd.concat([outcomes, pd.DataFrame([last])], ignore_index=True)
    created = pd.to_datetime(leads["created_at"], utc=True, format="ISO8601")
    handed = leads.iloc[::5]  # a hand-over two days in; a third of the rest scored, never handed over
    never = leads.drop(handed.index).iloc[::3]
    selection = pd.DataFrame(
        {
            "lead_id": pd.concat([handed["lead_id"], never["lead_id"]]),
            "handed_at": pd.concat(
                [
                    (created[handed.index] + pd.Timedelta(days=2)).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    pd.Series(None, index=never.index, dtype=object),
                ]
            ),
            "propensity": [0.25] * len(handed) + [0.6] * len(never),
        }
    )
    out = tmp_path_factory.mktemp("spark-training")
    plain, selected = out / "plain", out / "selected"
    for d in (plain, selected):
        d.mkdir()
        leads.to_parquet(d / "leads.parquet", index=False)
        events.reset_index(drop=True).to_parquet(d / "events.parquet", index=False)
        outcomes.to_parquet(d / "outcomes.parquet", index=False)
    selection.to_parquet(selected / "selection.parquet", index=False)
    assert outcomes["lead_id"].nunique() < TRAIN_LEADS / 2  # most leads have no outcome
    return plain, selected


def _local_table(data):
    from leadscore.features.feature_tables import training_table
    from leadscore.features.labels import QualifiedDefinition
    from leadscore.features.loading import load_dataset

    dataset = load_dataset(data)
    return training_table(dataset, QualifiedDefinition(horizon_days=14)), dataset


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["lead_id", "as_of"], ignore_index=True)


@pytest.mark.parametrize("typed", [False, True], ids=["string-times", "TimestampType"])
def test_spark_training_rows_are_the_local_training_table(spark, with_outcomes, tmp_path, typed):
    from leadscore.features.feature_tables import read_training_table
    from leadscore.features.labels import QualifiedDefinition
    from pyspark.sql import functions as F

    from leadscore import spark as ls

    # given leads, events (duplicates, silent leads) and outcomes on Spark in a non-UTC session; the
    # typed case with a selection table too, and every time column a Spark timestamp
    plain, selected = with_outcomes
    data = selected if typed else plain
    leads, events = _frames(spark, data, typed)
    outcomes = spark.read.parquet(str(data / "outcomes.parquet"))
    selection = None
    if typed:
        outcomes = outcomes.withColumn("at", F.to_timestamp("at"))
        selection = spark.read.parquet(str(data / "selection.parquet"))
        selection = selection.withColumn("handed_at", F.to_timestamp("handed_at"))
    want, dataset = _local_table(data)
    assert dataset.notes and "exact duplicate" in dataset.notes[0]
    # when the training table is built on Spark (the snapshot found by the loader's rule) and written
    definition = QualifiedDefinition(horizon_days=14)
    table = ls.training_rows(spark, leads, events, outcomes, definition, selection_df=selection, partitions=3)
    snap = ls.data_snapshot(leads, events, outcomes)
    assert snap == dataset.snapshot_at
    ls.write_training_table(spark, table, tmp_path / "t.parquet", definition, snap)
    # then, sorted by lead and as_of, it is the local table: columns, types and values
    got, meta = read_training_table(tmp_path / "t.parquet")
    assert meta["definition"] == definition.to_dict() and meta["selection"] is typed
    assert ("unlabelled" in want.columns) is typed and want["lead_id"].nunique() > 100
    assert set(want["label"]) == {0, 1}
    pd.testing.assert_frame_equal(_sorted(got), _sorted(want), check_exact=True, check_dtype=False)
    assert [str(d) for d in got.dtypes] == [str(d) for d in want.dtypes]
    # and read back it is in the local table's order (by as_of, then lead)
    assert got[["lead_id", "as_of"]].equals(want[["lead_id", "as_of"]])


def test_features_engine_spark_writes_what_leadscore_features_writes(spark, small, tmp_path):
    from typer.testing import CliRunner

    from leadscore.cli.main import app

    # given the small dataset (duplicate events, silent leads) and a moment inside its data
    data, snapshot, _, _ = small
    moment = (snapshot - pd.Timedelta(days=20)).isoformat()
    runs = {}
    for engine in ("local", "spark"):
        # when `leadscore features` writes the features at that moment, locally and on Spark
        out = tmp_path / f"{engine}.parquet"
        args = ["features", "--data", str(data), "--as-of", moment, "--out", str(out), "--engine", engine]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        runs[engine] = pd.read_parquet(out).sort_values("lead_id", ignore_index=True)
    # then the Spark part files hold exactly the local file's rows: columns, types and values
    local, on_spark = runs["local"], runs["spark"]
    assert len(local) > 100 and local["engagement_30d"].gt(0).any()
    assert list(on_spark.columns) == list(local.columns)
    pd.testing.assert_frame_equal(on_spark, local, check_exact=True, check_dtype=False)
    assert [str(d) for d in on_spark.dtypes] == [str(d) for d in local.dtypes]


def test_train_from_a_training_table_is_training_from_the_data(trained, demo_dir, tmp_path):
    import json

    import mlflow
    from typer.testing import CliRunner

    from leadscore.cli.main import app
    from leadscore.settings import get_settings

    # given the demo data's training table, written by `leadscore features --training`
    table = tmp_path / "table.parquet"
    args = ["features", "--data", str(demo_dir), "--training", "--out", str(table)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    # when `leadscore train --table` trains from it, into a registry of its own
    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        get_settings.cache_clear()
        try:
            args = [
                "train",
                "--table",
                str(table),
                "--model",
                "scorecard",
                "--metrics-out",
                str(tmp_path / "m"),
            ]
            done = CliRunner().invoke(app, args)
            version = mlflow.MlflowClient().get_model_version_by_alias("leadscore", "champion")
        finally:
            mlflow.set_tracking_uri(before)
            get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    # then it registered the model (the first version: champion), with exactly the metrics of the same
    # configuration trained from the data directory (the session's champion)
    metrics = json.loads((tmp_path / "m").read_text())
    assert str(version.version) == "1" and metrics["version"] == "1"
    assert metrics["holdout"] == json.loads(json.dumps(trained.result.metrics))
    assert metrics["n_train"] == trained.result.model.info["n_train"]
    # and definition options that contradict the table's are refused, naming them
    refused = CliRunner().invoke(app, ["train", "--table", str(table), "--horizon-days", "7"])
    assert refused.exit_code != 0 and "--horizon-days" in refused.output


def test_a_table_sample_is_whole_leads_drawn_by_seed(with_outcomes, tmp_path):
    from leadscore.features.feature_tables import read_training_table
    from typer.testing import CliRunner

    from leadscore.cli.main import app

    # given a training table
    plain, _ = with_outcomes
    done = CliRunner().invoke(
        app, ["features", "--data", str(plain), "--training", "--out", str(tmp_path / "t.parquet")]
    )
    assert done.exit_code == 0, done.output
    whole, _ = read_training_table(tmp_path / "t.parquet")
    # when half of its leads are sampled, twice with one seed and once with another
    a, _ = read_training_table(tmp_path / "t.parquet", 0.5, seed=1)
    b, _ = read_training_table(tmp_path / "t.parquet", 0.5, seed=1)
    c, _ = read_training_table(tmp_path / "t.parquet", 0.5, seed=2)
    # then a sample holds every row of its leads and no other, about half of them, the same for a seed
    pd.testing.assert_frame_equal(a, b)
    kept = set(a["lead_id"])
    assert 0.35 < len(kept) / whole["lead_id"].nunique() < 0.65
    expected = whole[whole["lead_id"].isin(kept)].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, expected)
    assert set(c["lead_id"]) != kept


def test_features_training_engine_spark_writes_the_local_training_table(spark, with_outcomes, tmp_path):
    from leadscore.features.feature_tables import read_training_table
    from typer.testing import CliRunner

    from leadscore.cli.main import app

    # given a dataset directory with outcomes and a selection table, and no dataset.json
    _, selected = with_outcomes
    tables = {}
    for engine in ("local", "spark"):
        # when `leadscore features --training` writes its training table, locally and on Spark
        out = tmp_path / f"{engine}.parquet"
        args = ["features", "--data", str(selected), "--training", "--horizon-days", "14"]
        done = CliRunner().invoke(app, [*args, "--out", str(out), "--engine", engine])
        assert done.exit_code == 0, done.output
        tables[engine] = read_training_table(out)
    # then both hold the same rows, read back in the same order, for the same definition and snapshot
    (local, local_meta), (on_spark, spark_meta) = tables["local"], tables["spark"]
    assert local_meta == spark_meta and local_meta["definition"]["horizon_days"] == 14
    assert local["unlabelled"].any() and local["propensity"].notna().any()
    pd.testing.assert_frame_equal(on_spark, local, check_exact=True)


@pytest.mark.parametrize("command", ["training", "features", "score"])
def test_bad_data_on_spark_is_a_clear_error_not_a_traceback(spark, small, tmp_path, command, request):
    from typer.testing import CliRunner

    from leadscore.cli.main import app

    # given the small dataset with an unknown event type in one row
    data, _, _, _ = small
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    events = pd.read_parquet(data / "events.parquet")
    events.loc[5, "type"] = "email_open"
    events.to_parquet(bad / "events.parquet", index=False)
    # when a feature table is built from it, or it is scored, on Spark
    what = {"training": ["features", "--training"], "features": ["features", "--as-of", "2026-01-01"]}
    if command == "score":
        request.getfixturevalue("trained")  # the registered champion `score` loads
    args = [*what.get(command, ["score"]), "--data", str(bad), "--engine", "spark"]
    args += ["--out", str(tmp_path / "t.parquet")]
    done = CliRunner().invoke(app, args)
    # then the command fails as the local one does: exit 2, the problem named (table, column, value)
    assert done.exit_code == 2, done.output
    assert "events" in done.output and "'type'" in done.output and "'email_open'" in done.output
    assert "Traceback" not in done.output


def test_features_training_on_spark_never_overwrites_what_is_not_a_training_table(spark, small, tmp_path):
    from typer.testing import CliRunner

    from leadscore.cli.main import app

    # given an --out directory that holds something else (as `leadscore features --training` refuses it)
    data, _, _, _ = small
    out = tmp_path / "t.parquet"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    # when the training table is written there on Spark
    args = ["features", "--data", str(data), "--training", "--engine", "spark", "--out", str(out)]
    done = CliRunner().invoke(app, args)
    # then the command refuses, as the local one does, and the directory is as it was
    assert done.exit_code == 2, done.output
    assert "is not a training table" in done.output
    assert (out / "notes.txt").read_text() == "mine"
