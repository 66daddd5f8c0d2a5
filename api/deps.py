"""Request-scoped dependencies: settings, a DB session that commits when the handler succeeds."""

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import Depends
from sqlalchemy.orm import Session

from db.engine import get_sessionmaker
from traindock.settings import Settings, get_settings


async def _session() -> AsyncIterator[Session]:
    """Made on the event loop, since a session connects only when first used: a sync dependency
    would cost each request one more hop to a worker thread. Ending it talks to the database, so
    that runs in a thread, shielded so a cancelled request still gives its connection back."""
    session = get_sessionmaker()()
    try:
        yield session
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_end, session, False)
        raise
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(_end, session, True)


def _end(session: Session, succeeded: bool) -> None:
    try:
        if succeeded:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


async def _settings() -> Settings:
    """Async for the same reason: FastAPI runs a plain function dependency in a worker thread."""
    return get_settings()


SessionDep = Annotated[Session, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(_settings)]
