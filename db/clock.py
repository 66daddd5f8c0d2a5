"""One clock for heartbeats: the database server's. A worker whose host clock runs ahead or
behind must not make a live attempt look stale. SQLite is embedded, so every process that uses
it shares the host's clock."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import utcnow


def database_now(session: Session) -> datetime:
    if session.get_bind().dialect.name == "sqlite":
        return utcnow()
    return session.scalar(select(func.now()))
