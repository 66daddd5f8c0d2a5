"""Engine and session factory for either backend, chosen by the database URL."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from traindock.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A little room over the pool for a thread that briefly holds two connections.
POOL_OVERFLOW = 4
# Below PostgreSQL's and any proxy's idle timeouts: connections are renewed before the server
# drops them, which is what a ping on every checkout would otherwise find out (one round trip each).
POOL_RECYCLE_S = 1800


def make_engine(url: str, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        # The API, the worker and the training process write at once: WAL lets readers go on
        # during a write, and the busy timeout makes writers wait for each other instead of failing.
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=POOL_OVERFLOW, pool_recycle=POOL_RECYCLE_S,
                         pool_use_lifo=True)


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(settings.effective_database_url, settings.effective_db_pool_size)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
