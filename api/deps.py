"""Request-scoped dependencies: settings, and the request's unit of work."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from db.engine import session_scope
from traindock.settings import Settings, get_settings


def _session() -> Iterator[Session]:
    """Commits when the handler succeeds, rolls back when it raises; what the transaction queued
    (broker sends, file removals) happens after the commit (db/hooks.py). Function scope: all of
    it before the response is sent, so a client never sees a job that is not committed."""
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
