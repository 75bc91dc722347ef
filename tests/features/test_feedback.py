"""Service feedback merged into a dataset's outcomes: what a retrain learns from what sales said."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from leadscore.features import schema as S
from leadscore.features.feedback import with_feedback
from leadscore.features.labels import QualifiedDefinition, training_rows
from leadscore.features.loading import DataError, Dataset

T0 = pd.Timestamp("2025-01-01", tz="UTC")
SNAPSHOT = pd.Timestamp("2025-06-01", tz="UTC")
DEFINITION = QualifiedDefinition(
    horizon_days=30, ages_days=(1, 3, 14), at_handoff=False, age_sampling="fixed"
)


def day(d: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=d)


def make_dataset(outcomes: list[tuple]) -> Dataset:
    leads = pd.DataFrame({S.LEAD_ID: [f"L{i}" for i in range(1, 6)], S.CREATED_AT: [T0] * 5})
    for c in S.LEAD_ATTRIBUTES:
        leads[c] = None
    leads[S.CREATED_AT] = leads[S.CREATED_AT].astype("datetime64[ms, UTC]")
    events = pd.DataFrame(
        {
            S.LEAD_ID: ["L1", "L2"],
            S.EVENT_TYPE: ["email_sent", "email_sent"],
            S.TIMESTAMP: [day(0.5), day(0.5)],
            S.PAGE: [None, None],
        }
    )
    events[S.TIMESTAMP] = events[S.TIMESTAMP].astype("datetime64[ms, UTC]")
    out = pd.DataFrame(outcomes, columns=list(S.OUTCOME_COLUMNS))
    out[S.OUTCOME_AT] = pd.to_datetime(out[S.OUTCOME_AT], utc=True).astype("datetime64[ms, UTC]")
    return Dataset(leads=leads, events=events, outcomes=out, snapshot_at=SNAPSHOT)


def feedback(rows: list[tuple]) -> pd.DataFrame:
    """Rows (lead_id, outcome, at, reason) shaped like `store.feedback_frame`, ids in the given order."""
    df = pd.DataFrame(rows, columns=["lead_id", "outcome", "at", "reason"])
    df.insert(0, "id", range(1, len(df) + 1))
    df["at"] = pd.to_datetime(df["at"], utc=True)
    return df


def outcomes_of(ds: Dataset, lead: str) -> list[tuple]:
    o = ds.outcomes[ds.outcomes[S.LEAD_ID] == lead].sort_values(S.OUTCOME_AT)
    return [(r.outcome, r.at, r.reason if isinstance(r.reason, str) else None) for r in o.itertuples()]


def labels_of(ds: Dataset, lead: str) -> dict[str, int]:
    rows = training_rows(ds, DEFINITION)
    rows = rows[rows[S.LEAD_ID] == lead]
    return dict(zip(rows["moment"], rows["label"].astype(int), strict=True))


def test_a_verdict_for_a_lead_the_export_left_open_becomes_its_label():
    # given L1 without any outcome in the export: its complete windows are negatives
    ds = make_dataset([("L2", "disqualified", day(40), "bad_fit")])
    assert labels_of(ds, "L1") == {"age_1d": 0, "age_3d": 0, "age_14d": 0}
    # when sales says through the service that L1 qualified on day 10
    merged = with_feedback(ds, feedback([("L1", "qualified", day(10), None)]))
    # then L1 has that outcome, rows before day 10 are positives and rows after it are gone (resolved)
    assert outcomes_of(merged, "L1") == [("qualified", day(10), None)]
    assert labels_of(merged, "L1") == {"age_1d": 1, "age_3d": 1}
    assert "1 where the export had none" in merged.notes[-1]


def test_a_later_verdict_corrects_the_export_at_the_time_the_lead_was_first_decided():
    # given the export says L2 was disqualified on day 10
    ds = make_dataset([("L2", "disqualified", day(10), "bad_fit")])
    # when sales corrects it to qualified on day 20
    merged = with_feedback(ds, feedback([("L2", "qualified", day(20), None)]))
    # then L2 has one verdict, qualified, still stamped day 10: rows after the first decision stay out
    assert outcomes_of(merged, "L2") == [("qualified", day(10), None)]
    assert labels_of(merged, "L2") == {"age_1d": 1, "age_3d": 1}
    assert "1 changed the export's verdict" in merged.notes[-1]


def test_an_earlier_verdict_moves_the_resolution_earlier():
    # given the export says L2 qualified on day 10
    ds = make_dataset([("L2", "qualified", day(10), None)])
    # when feedback says it was disqualified on day 2 (student)
    merged = with_feedback(ds, feedback([("L2", "disqualified", day(2), "student")]))
    # then the verdict is the feedback's, on day 2, so the day-3 row is no longer a training row
    assert outcomes_of(merged, "L2") == [("disqualified", day(2), "student")]
    assert labels_of(merged, "L2") == {"age_1d": 0}


def test_the_latest_feedback_verdict_wins_and_ties_go_to_the_later_id():
    # given two leads with several verdicts from sales
    ds = make_dataset([])
    fb = feedback(
        [
            ("L3", "qualified", day(5), None),
            ("L3", "disqualified", day(8), "no_budget"),
            ("L4", "disqualified", day(6), "spam"),
            ("L4", "qualified", day(6), None),
        ]
    )
    # when merged
    merged = with_feedback(ds, fb)
    # then each lead has one verdict: the last one given, at the first verdict's time
    assert outcomes_of(merged, "L3") == [("disqualified", day(5), "no_budget")]
    assert outcomes_of(merged, "L4") == [("qualified", day(6), None)]
    # and the store's ids, not the frame's order, decide a tie
    assert outcomes_of(with_feedback(ds, fb.iloc[::-1]), "L4") == [("qualified", day(6), None)]


def test_won_and_lost_are_appended_without_duplicates_and_the_exports_follow_ups_stay():
    # given the export has L2 qualified, an opportunity and a win
    ds = make_dataset(
        [
            ("L2", "qualified", day(10), None),
            ("L2", "opportunity", day(15), None),
            ("L2", "won", day(50), None),
        ]
    )
    # when feedback repeats the win (same time), and reports L5 lost twice (a retried request)
    fb = feedback(
        [("L2", "won", day(50), None), ("L5", "lost", day(30), None), ("L5", "lost", day(30), None)]
    )
    merged = with_feedback(ds, fb)
    # then the win is not doubled, L5's loss is there once, and the export's rows are untouched
    assert outcomes_of(merged, "L2") == outcomes_of(ds, "L2")
    assert outcomes_of(merged, "L5") == [("lost", day(30), None)]
    assert "1 won/lost row(s) added, 1 already in the export" in merged.notes[-1]


def test_feedback_the_export_cannot_use_is_ignored_and_counted():
    # given feedback for a lead the export does not have, one after the snapshot, one before creation
    ds = make_dataset([("L2", "qualified", day(10), None)])
    fb = feedback(
        [
            ("L99", "qualified", day(10), None),
            ("L1", "qualified", SNAPSHOT + pd.Timedelta(days=1), None),
            ("L3", "disqualified", day(-1), "spam"),
        ]
    )
    # when merged
    merged = with_feedback(ds, fb)
    # then the outcomes are the export's and the notes say why each row was ignored
    pd.testing.assert_frame_equal(merged.outcomes, ds.outcomes)
    note = merged.notes[-1]
    assert "1 ignored for leads not in the export" in note
    assert "1 ignored dated after the export's snapshot" in note
    assert "1 ignored dated before their lead was created" in note


def test_the_input_dataset_is_not_modified_and_empty_feedback_changes_nothing():
    # given a dataset
    ds = make_dataset([("L2", "disqualified", day(10), "bad_fit")])
    before = ds.outcomes.copy()
    # when merged with feedback and with no feedback
    with_feedback(ds, feedback([("L2", "qualified", day(20), None)]))
    empty = with_feedback(ds, feedback([]))
    # then the original is as it was, and no feedback gives the same outcomes
    pd.testing.assert_frame_equal(ds.outcomes, before)
    pd.testing.assert_frame_equal(empty.outcomes, before)


@pytest.mark.parametrize(
    "rows, column, reason",
    [
        ([("L1", "opportunity", day(5), None)], "outcome", "'opportunity' is not one of"),
        ([("L1", "qualified", "next tuesday", None)], "at", "not an ISO-8601 timestamp"),
        ([(None, "qualified", day(5), None)], "lead_id", "missing lead id"),
    ],
)
def test_invalid_feedback_is_refused_naming_row_column_and_reason(rows, column, reason):
    # given feedback with one bad value
    fb = pd.DataFrame(rows, columns=["lead_id", "outcome", "at", "reason"])
    # when merged, then the error names row 1, the column and the reason
    with pytest.raises(DataError) as err:
        with_feedback(make_dataset([]), fb)
    assert f"row 1, column '{column}'" in str(err.value) and reason in str(err.value)


def test_feedback_without_a_required_column_is_refused():
    with pytest.raises(DataError, match="column 'at': required column is missing"):
        with_feedback(make_dataset([]), pd.DataFrame({"lead_id": ["L1"], "outcome": ["qualified"]}))


def test_feedback_read_from_the_service_store_merges(tmp_path):
    # given feedback stored by the service's own store code in a real SQLite database
    from leadscore.serve import db, store

    url = f"sqlite:///{tmp_path / 'leadscore.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    for lead_id in ("L1", "L2"):  # the service takes feedback only for leads it stores
        store.upsert_lead(engine, lead_id, datetime(2025, 1, 1, tzinfo=UTC), {})
    store.add_feedback(engine, "L1", "qualified", at=datetime(2025, 1, 11, tzinfo=UTC))
    store.add_feedback(
        engine,
        "L2",
        "disqualified",
        reason="competitor",
        at=datetime(2025, 1, 5, tzinfo=UTC),
        idempotency_key="k-1",
    )
    store.add_feedback(
        engine,
        "L2",
        "disqualified",
        reason="competitor",
        at=datetime(2025, 1, 5, tzinfo=UTC),
        idempotency_key="k-1",
    )  # a retry: stored once
    # when read back through the package and merged into the export
    ds = make_dataset([("L2", "qualified", day(10), None)])
    merged = with_feedback(ds, store.feedback_frame(engine))
    engine.dispose()
    # then both verdicts are there, as UTC times to the millisecond
    assert outcomes_of(merged, "L1") == [("qualified", day(10), None)]
    assert outcomes_of(merged, "L2") == [("disqualified", day(4), "competitor")]
    assert str(merged.outcomes[S.OUTCOME_AT].dtype) == "datetime64[ms, UTC]"
