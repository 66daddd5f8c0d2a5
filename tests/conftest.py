"""Backends for tests. Each test gets a fresh data root; the database schema is built only by the
real Alembic migrations (SQLite: per test; PostgreSQL: once per session, then truncated)."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "TRAINDOCK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TRAINDOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclass
class Backend:
    name: str
    data_dir: Path
    database_url: str | None
    broker_url: str | None

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process (API, worker, training child) on this backend."""
        env = {"TRAINDOCK_DATA_DIR": str(self.data_dir)}
        if self.database_url:
            env["TRAINDOCK_DATABASE_URL"] = self.database_url
        if self.broker_url:
            env["TRAINDOCK_BROKER_URL"] = self.broker_url
        return env


def alembic_config() -> Config:
    config = Config(str(REPO / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


def reset_caches() -> None:
    from traindock.broker import producer
    from db.engine import get_engine, get_sessionmaker
    from traindock.settings import get_settings

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    for cached in (get_settings, get_engine, get_sessionmaker, producer):
        cached.cache_clear()


def use_backend(monkeypatch: pytest.MonkeyPatch, backend: Backend) -> None:
    for key in ("TRAINDOCK_DATABASE_URL", "TRAINDOCK_BROKER_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in backend.env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    from traindock.settings import get_settings

    get_settings().ensure_dirs()


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    """A clean schema, whatever an earlier run left in the database, built by the migrations."""
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    os.environ["TRAINDOCK_DATABASE_URL"] = POSTGRES_URL
    reset_caches()
    try:
        command.upgrade(alembic_config(), "head")
    finally:
        del os.environ["TRAINDOCK_DATABASE_URL"]
        reset_caches()
    return POSTGRES_URL


def truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "TRUNCATE sweep_events, sweeps, samples, webhook_deliveries, webhook_endpoints, metric_blocks, metric_points, checkpoints, "
            "events, runs, jobs, datasets, api_keys, tenants, workers "
            "RESTART IDENTITY CASCADE"
        ))
    engine.dispose()
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path, monkeypatch) -> Iterator[Backend]:
    """Every test that takes this runs on both: embedded (SQLite + filesystem broker) and
    production (PostgreSQL + Redis)."""
    if request.param == "sqlite":
        chosen = Backend("sqlite", tmp_path / "data", None, None)
        use_backend(monkeypatch, chosen)
        command.upgrade(alembic_config(), "head")
    else:
        url = request.getfixturevalue("postgres_migrated")
        truncate_postgres(url)
        chosen = Backend("postgres", tmp_path / "data", url, REDIS_URL)
        use_backend(monkeypatch, chosen)
    yield chosen
    reset_caches()


@pytest.fixture
def sqlite_backend(tmp_path, monkeypatch) -> Iterator[Backend]:
    chosen = Backend("sqlite", tmp_path / "data", None, None)
    use_backend(monkeypatch, chosen)
    command.upgrade(alembic_config(), "head")
    yield chosen
    reset_caches()
