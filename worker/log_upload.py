"""An attempt's log (and its ranks' logs) to the store while it runs and once more at its end, so
`GET /jobs/{id}/logs` answers from any API replica. Nothing to do with the local store: the API
reads the file itself. A store that does not answer costs a later upload, never the attempt."""

import logging
import threading
from pathlib import Path

from traindock.storage import get_store

log = logging.getLogger(__name__)


class LogUploads:
    def __init__(self, log_path: Path, interval_s: float):
        self.log_path, self.interval_s = log_path, interval_s
        self.store = get_store()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"upload {log_path.name}")

    def __enter__(self) -> "LogUploads":
        if self.store.copies:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.store.copies:
            self.done.set()
            self.thread.join()
            self.upload()

    def _loop(self) -> None:
        while not self.done.wait(self.interval_s):
            self.upload()

    def upload(self) -> None:
        for path in [self.log_path, *sorted(self.log_path.parent.glob(f"{self.log_path.stem}.rank-*.log"))]:
            try:
                if path.is_file():
                    self.store.put_file(path, patient=False)
            except Exception as exc:  # the next round, or the end, tries again
                log.warning("could not upload %s: %s", path.name, exc)
