from alembic import context
from leadscore.serve.db import metadata
from sqlalchemy import engine_from_config, pool

config = context.config


def run_migrations_online() -> None:
    given = config.attributes.get("connection")  # `db.migrate` on PostgreSQL: its locked transaction
    if given is not None:
        context.configure(connection=given, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
