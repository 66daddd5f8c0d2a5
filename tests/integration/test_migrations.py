"""The schema comes only from Alembic: up, down and up again on both databases, matching the models."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.engine import get_engine
from db.models import Base
from tests.conftest import alembic_config

TABLES = {"datasets", "jobs", "runs", "events", "metric_points", "metric_blocks", "checkpoints", "webhook_endpoints",
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


def test_the_block_summaries_migration_fills_them_from_the_points(client, dataset):
    """0009 summarizes the points already there exactly as the writes do."""
    from tests.integration.conftest import make_spec
    from tests.integration.test_metrics import record, stored_blocks

    job = client.post("/jobs", json=make_spec(dataset["id"])).json()["id"]
    record(job, [(step, {"loss": step % 64 + step / 1000, "eval_loss": (step * 7919 % 13) / 100})
                 for step in range(0, 1000, 3)])
    written, _ = stored_blocks(job)
    assert len(written) == 2 * (16 + 125)  # blocks of 64 and of 8 steps of each name
    command.downgrade(alembic_config(), "0008")
    get_engine().dispose()
    assert "metric_blocks" not in inspect(get_engine()).get_table_names()
    command.upgrade(alembic_config(), "head")
    get_engine().dispose()
    migrated, rebuilt = stored_blocks(job)
    assert migrated == written == rebuilt
