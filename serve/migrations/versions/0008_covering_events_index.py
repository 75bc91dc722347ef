"""covering events index: the events' (lead_id, timestamp) index also holds type and page

Reading a lead's events (scoring, `leadscore rescore`, the API's newest events of a lead) then needs the
index only: without type and page in it, the database visits each event's table row behind the index
entry, a random page read per event once a lead's events are spread over the table by their arrival. The
index grows by about 15% (docs/data-model.md gives the sizes and what the migration costs on a large store).

Revision ID: 0008_covering_events_index
Revises: 0007_handoff_events
"""

from alembic import op

revision = "0008_covering_events_index"
down_revision = "0007_handoff_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # built before the old one is dropped: the reads keep an index if the database commits DDL as it goes
    op.create_index(
        "ix_events_lead_id_timestamp_type_page", "events", ["lead_id", "timestamp", "type", "page"]
    )
    op.drop_index("ix_events_lead_id_timestamp", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_lead_id_timestamp", "events", ["lead_id", "timestamp"])
    op.drop_index("ix_events_lead_id_timestamp_type_page", table_name="events")
