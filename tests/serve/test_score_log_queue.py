"""The score-log queue is bounded in bytes: past the bound rows are dropped, counted in the Prometheus
counter, and warned about once per interval with their number, not once per row."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from leadscore.serve import db, store
from leadscore.serve.metrics import Metrics
from support import score_entry

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ROW = score_entry(
    "q-1",
    T0,
    features={"lead_age_days": 2.5, "country": "DE"},
    reasons=[{"feature": "country", "value": "DE", "impact": 0.1, "points": 3, "text": "Country: DE"}],
)


def test_a_full_queue_drops_rows_counts_them_and_warns_once_per_interval(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    metrics = Metrics()
    one_row = store.ScoreLogWriter.size([store.score_log_row(ROW)])
    # given a writer whose database pass has not come yet, with room for 10 rows
    writer = store.ScoreLogWriter(
        engine, flush_seconds=3600, max_bytes=10 * one_row, on_drop=metrics.score_log_dropped.inc
    )
    writer.DROP_LOG_SECONDS = 3600
    caplog.set_level(logging.WARNING, logger="leadscore.serve.store")
    # when 10 rows fill it and 30 more requests of 5 rows each come
    for i in range(10):
        writer.put([{**ROW, "lead_id": f"q-{i}"}])
    assert writer.queued_bytes == 10 * one_row
    for _ in range(30):
        writer.put([ROW] * 5)
    # then those 150 rows are dropped and counted, and nothing was logged per row
    assert writer.dropped == 150
    assert "leadscore_score_log_dropped_rows_total 150.0" in metrics.render().decode()
    assert "queue full" not in caplog.text
    # when the writer's pass reports them: one warning with their number
    writer.log_drops()
    warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1 and "dropped 150 rows" in warnings[0]
    # and more drops within the interval wait for the next warning
    writer.put([ROW] * 3)
    writer.log_drops()
    assert sum("queue full" in r.getMessage() for r in caplog.records) == 1
    # when the database takes the queue, there is room again
    writer.flush(everything=True)
    assert writer.queued_bytes == 0
    writer.put([{**ROW, "lead_id": "q-after"}])
    writer.close()  # writes it, and warns about the 3 rows not warned about yet
    assert len(store.score_history(engine, "q-after")) == 1
    assert sum(len(store.score_history(engine, f"q-{i}")) for i in range(10)) == 10
    warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 2 and "dropped 3 rows" in warnings[1] and "153 since start" in warnings[1]
    engine.dispose()
