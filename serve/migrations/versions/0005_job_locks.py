"""job locks: one row per running scheduled job (`leadscore retrain`), so two runs never race

Revision ID: 0005_job_locks
Revises: 0003_compact_score_log
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_job_locks"
down_revision = "0003_compact_score_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_locks")
