"""handoff events: each scored lead's newest score (`lead_state`), the outbox of `lead.handoff` and
`lead.grade_changed` events written in the score's transaction, and the rescore queue with its per-champion
runs (`serve.db` says what each column holds).

Revision ID: 0007_handoff_events
Revises: 0006_handoff_propensity
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_handoff_events"
down_revision = "0006_handoff_propensity"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "lead_state",
        sa.Column("lead_id", sa.String(128), primary_key=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("probability", sa.Float, nullable=True),
        sa.Column("score", sa.Integer, nullable=True),
        sa.Column("grade", sa.String(1), nullable=True),
        sa.Column("qualified", sa.Boolean, nullable=True),
        sa.Column("explored", sa.Boolean, nullable=True),
        sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_lead_state_handed_over_at", "lead_state", ["handed_over_at"])
    op.create_table(
        "outbox",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("lead_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,  # ids never reused (the pull cursor): serve.db says why
    )
    op.create_index("ix_outbox_lead_id", "outbox", ["lead_id"])
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])
    op.create_table(
        "rescore_queue",
        sa.Column("lead_id", sa.String(128), primary_key=True),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(160), nullable=True),
    )
    op.create_index("ix_rescore_queue_priority_enqueued_at", "rescore_queue", ["priority", "enqueued_at"])
    op.create_table(
        "rescore_runs",
        sa.Column("model_version", sa.String(32), primary_key=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("rescore_runs")
    op.drop_table("rescore_queue")
    op.drop_table("outbox")
    op.drop_table("lead_state")
