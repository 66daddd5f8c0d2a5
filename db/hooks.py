"""Work tied to the fate of a transaction: done once it commits, or once it rolls back. Sessions
commit in one place (db.engine.session_scope, which the API's request scope uses), so a request
handler never commits by hand to order a side effect after its writes."""

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

AFTER_COMMIT = "traindock.after_commit"
AFTER_ROLLBACK = "traindock.after_rollback"


def after_commit(session: Session, action: Callable[[], object]) -> None:
    session.info.setdefault(AFTER_COMMIT, []).append(action)


def after_rollback(session: Session, action: Callable[[], object]) -> None:
    session.info.setdefault(AFTER_ROLLBACK, []).append(action)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    session.info.pop(AFTER_ROLLBACK, None)
    _run(session.info.pop(AFTER_COMMIT, []))


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(AFTER_COMMIT, None)
    _run(session.info.pop(AFTER_ROLLBACK, []))


def _run(actions: list[Callable[[], object]]) -> None:
    for action in actions:
        try:
            action()
        except Exception:  # what committed stays committed; the action's owner recovers
            log.exception("after-transaction action failed")
