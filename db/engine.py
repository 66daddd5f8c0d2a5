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
# drops them, which is what a ping on every checkout would otherwise find out.
POOL_RECYCLE_S = 1800
# Workers and training processes check out a connection every few seconds and must not lose a
# run to one the server dropped: they ping first. The API checks out on every request, where a
# ping is a round trip each time, so it relies on the recycling (serve_requests).
_ping_on_checkout = True


def serve_requests() -> None:
    """This process serves the API: connections without the ping from now on."""
    global _ping_on_checkout
    if not _ping_on_checkout:
        return
    _ping_on_checkout = False
    if get_engine.cache_info().currsize:  # made earlier in this process (`traindock up` migrates first)
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()


def make_engine(url: str, pool_size: int = 5, pre_ping: bool = True) -> Engine:
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
                         pool_use_lifo=True, pool_pre_ping=pre_ping)


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(settings.effective_database_url, settings.effective_db_pool_size, _ping_on_checkout)


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
