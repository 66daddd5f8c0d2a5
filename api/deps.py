"""Request-scoped dependencies: settings, and the request's unit of work."""

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import Depends
from sqlalchemy.orm import Session

from db.engine import get_sessionmaker
from traindock.settings import Settings, get_settings


async def _session() -> AsyncIterator[Session]:
    """The request's unit of work: commits when the handler succeeds, rolls back when it raises;
    what the transaction queued (broker sends, file removals) happens after the commit
    (db/hooks.py). Function scope: all of it before the response is sent, so a client never sees
    a job that is not committed. Made on the event loop, since a session connects only when first
    used; ending it talks to the database, so that runs in a thread, shielded so a cancelled
    request still gives its connection back."""
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


SessionDep = Annotated[Session, Depends(_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
