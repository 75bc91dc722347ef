"""compact score log: feature sets stored once, events indexed by lead and time

The score log's features become a JSON array of values in the order of a feature set's names (stored once
in `feature_sets`), its reasons arrays instead of objects. Rows written before keep their objects and no
feature set; the store reads both (`store.decode_score_log`) and retention deletes them in time, so nothing
is rewritten here (a large log would hold the service's start for minutes).

Revision ID: 0003_compact_score_log
Revises: 0002_model_generation
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_compact_score_log"
down_revision = "0002_model_generation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_sets",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("names", sa.JSON, nullable=False),
    )
    op.add_column("score_log", sa.Column("feature_set", sa.String(16), nullable=True))
    # scoring a stored lead reads its newest events only: straight from this index
    op.create_index("ix_events_lead_id_timestamp", "events", ["lead_id", "timestamp"])
    op.drop_index("ix_events_lead_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_lead_id", "events", ["lead_id"])
    op.drop_index("ix_events_lead_id_timestamp", table_name="events")
    with op.batch_alter_table("score_log") as batch:
        batch.drop_column("feature_set")
    op.drop_table("feature_sets")
