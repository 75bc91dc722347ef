"""model generation and worker reports: every worker of the service switches models within seconds

Revision ID: 0002_model_generation
Revises: 0004_ui_sessions
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_model_generation"
down_revision = "0004_ui_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_generation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        sa.text("INSERT INTO model_generation (id, generation, updated_at) VALUES (1, 0, CURRENT_TIMESTAMP)")
    )
    op.create_table(
        "serve_workers",
        sa.Column("worker", sa.String(160), primary_key=True),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("serve_workers")
    op.drop_table("model_generation")
