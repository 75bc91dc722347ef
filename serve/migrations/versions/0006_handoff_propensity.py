"""handoff propensity: each score-log row records the probability that the lead was handed over under the
policy in force and whether it was handed over for exploration (`leadscore.model.exploration`). Nullable:
rows written before this revision are unknown (NULL), never guessed.

Revision ID: 0006_handoff_propensity
Revises: 0005_job_locks
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_handoff_propensity"
down_revision = "0005_job_locks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("score_log", sa.Column("propensity", sa.Float, nullable=True))
    op.add_column("score_log", sa.Column("explored", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("score_log") as batch:
        batch.drop_column("explored")
        batch.drop_column("propensity")
