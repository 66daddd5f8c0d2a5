"""Riding out a database that is briefly unreachable (a restart, a failover): which errors are
worth retrying, and a retry with backoff bounded by TRAINDOCK_DB_RETRY_S. A unit of work that
failed this way is run again whole, in a fresh session."""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 2.0


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for longer than the bound."""


def is_transient(exc: BaseException) -> bool:
    """Connection lost or refused, server starting or shutting down, SQLite busy: the same work
    may succeed a moment later. Constraint violations and bugs are not retried."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def backoff_delays(bound_s: float, first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S):
    """Doubling waits, capped at `max_s`, that together stay within `bound_s`."""
    waited, delay = 0.0, first_s
    while waited < bound_s:
        step = min(delay, max_s, bound_s - waited)
        yield step
        waited += step
        delay *= 2


def retrying(work: Callable[[], T], bound_s: float, what: str) -> T:
    """`work()`, run again after transient database errors for up to `bound_s` seconds; then
    DatabaseUnavailable."""
    delays = backoff_delays(bound_s)
    while True:
        try:
            return work()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise DatabaseUnavailable(f"the database was unreachable for over {bound_s:g} s ({what})") from exc
            log.warning("database unreachable (%s): %s; retrying in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
