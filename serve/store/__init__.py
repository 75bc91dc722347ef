"""Reads and writes of the service's store, one module per resource: leads and their events (`leads`),
sales' feedback (`feedback`, written synchronously: acknowledged = durable), the score log (`score_log`
reads, `score_log_rows` its compact row format, `handoffs` the one writer of scores, with the lead states
and handoff events they cause, `score_log_writer` the background writer that keeps it off the scoring hot
path, `retention` its pruning and the outbox's; `outbox` the handoff events in cursor order, read by the
handoff endpoint, `outbox_delivery` their leases and tries for the webhook deliverers, `outbox_admin` the
admin endpoints' view). `rows` holds what every read shares (UTC times, rows as dicts). The tables and the
engine are in `serve.db`.

Callers import the store as one (`from leadscore.serve import store`; `store.add_feedback(...)`)."""

from leadscore.serve.store.feedback import Conflict, UnknownLead, add_feedback, feedback_for, feedback_frame
from leadscore.serve.store.handoffs import GRADE_CHANGED, HANDOFF, write_scores
from leadscore.serve.store.leads import (
    LeadRange,
    TooManyEvents,
    add_events,
    get_leads,
    known_leads,
    lead_frames,
    lead_ranges,
    upsert_lead,
)
from leadscore.serve.store.retention import prune_all, prune_outbox_all, prune_score_log
from leadscore.serve.store.rows import IN_CHUNK, aware, now, row
from leadscore.serve.store.score_log import (
    LIST_SORTS,
    ListSort,
    latest_scores,
    list_order,
    recent_scores,
    score_history,
)
from leadscore.serve.store.score_log_rows import (
    REASON_FIELDS,
    SCORE_LOG_FIELDS,
    decode_score_log,
    encoded_score_log_rows,
    feature_names,
    insert_score_log,
    score_log_row,
)
from leadscore.serve.store.score_log_writer import ScoreLogWriter

__all__ = [
    "GRADE_CHANGED",
    "HANDOFF",
    "IN_CHUNK",
    "LIST_SORTS",
    "REASON_FIELDS",
    "SCORE_LOG_FIELDS",
    "Conflict",
    "LeadRange",
    "ListSort",
    "ScoreLogWriter",
    "TooManyEvents",
    "UnknownLead",
    "add_events",
    "add_feedback",
    "aware",
    "decode_score_log",
    "encoded_score_log_rows",
    "feature_names",
    "feedback_for",
    "feedback_frame",
    "get_leads",
    "insert_score_log",
    "known_leads",
    "lead_frames",
    "lead_ranges",
    "latest_scores",
    "list_order",
    "now",
    "prune_all",
    "prune_outbox_all",
    "prune_score_log",
    "recent_scores",
    "row",
    "score_history",
    "score_log_row",
    "upsert_lead",
    "write_scores",
]
