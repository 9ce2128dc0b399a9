"""Alembic environment: migrations run on the connection the store hands over."""

from alembic import context

from flowbot.store.schema import compare_type, include_object, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=compare_type,
    include_object=include_object,  # log search structures are the migrations' own
)
with context.begin_transaction():
    context.run_migrations()
