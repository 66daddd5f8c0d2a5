"""The schema comes only from Alembic: up, down and up again on both databases, matching the models."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.engine import get_engine
from db.models import Base
from tests.conftest import alembic_config

TABLES = {"datasets", "jobs", "runs", "events", "metric_points", "checkpoints", "webhook_endpoints",
          "webhook_deliveries", "workers", "samples"}


def test_migrations_go_down_and_up_and_match_the_models(backend):
    engine = get_engine()
    assert TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    command.downgrade(alembic_config(), "base")
    engine.dispose()
    assert not TABLES & set(inspect(engine).get_table_names())
    command.upgrade(alembic_config(), "head")
    engine.dispose()
    assert TABLES <= set(inspect(engine).get_table_names())
