"""Whether the broker answers (for /health); sending is db/outbox.py's, after the commit."""

import os

from traindock.broker import producer
from traindock.settings import Settings


def broker_reachable(settings: Settings) -> bool:
    if settings.uses_filesystem_broker:
        folder = settings.broker_folder / "queue"
        return folder.is_dir() and os.access(folder, os.W_OK)  # sending writes a file there
    with producer().connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
    return True
