"""Hands runs to the broker by task name; the API never imports worker code."""

import logging
import os
from functools import lru_cache

from celery import Celery

from traindock.broker import make_celery, run_task_id
from traindock.settings import Settings, get_settings

log = logging.getLogger(__name__)


@lru_cache
def producer() -> Celery:
    """The API's Celery app: it only sends and revokes."""
    return make_celery(get_settings())


def broker_reachable(settings: Settings) -> bool:
    if settings.uses_filesystem_broker:
        folder = settings.broker_folder / "queue"
        return folder.is_dir() and os.access(folder, os.W_OK)  # sending writes a file there
    with producer().connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
    return True


def revoke_run(run_id: int) -> None:
    """Best effort: the worker's DB claim refuses a cancelled run even if a delivery arrives."""
    try:
        producer().control.revoke(run_task_id(run_id))
    except Exception:  # the claim is the guarantee; the revoke only saves a delivery
        log.warning("could not revoke run %s", run_id, exc_info=True)
