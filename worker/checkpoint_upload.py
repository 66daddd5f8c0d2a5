"""Checkpoints to the store, beside training: the Trainer writes a folder, one thread uploads it
while the next steps run, and only then is the checkpoint recorded (listed, usable for a resume,
a download, the best model). One upload at a time: the next save, and the end of training, wait
for the one before (so the Trainer's rotation never deletes a folder being uploaded), and an upload
that failed (the store unreachable for longer than TRAINDOCK_STORAGE_RETRY_S) fails the attempt
there, its earlier checkpoints intact. With the local store nothing is uploaded: the record is
written at once, as before there was a store."""

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from traindock.storage import get_store

TRAINER_STATE = "trainer_state.json"  # written last by the Trainer, uploaded last: a whole folder has it


class CheckpointUploads:
    def __init__(self):
        self.store = get_store()
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self.waited_s = 0.0  # training time spent waiting for uploads (the job's result reports it)

    @property
    def in_background(self) -> bool:
        return self.store.copies

    def submit(self, folder: Path, record: Callable[[str], None]) -> None:
        """Upload `folder`, then `record(location)`."""
        self.wait()
        if not self.in_background:
            record(self.store.location_of(folder))
            return
        self.thread = threading.Thread(target=self._upload, args=(folder, record), daemon=True,
                                       name=f"upload {folder.name}")
        self.thread.start()

    def _upload(self, folder: Path, record: Callable[[str], None]) -> None:
        try:
            record(self.store.put_dir(folder, last=TRAINER_STATE))
        except BaseException as exc:  # raised in the training thread by the next wait()
            self.failure = exc

    def wait(self) -> None:
        if self.thread is not None:
            started = time.monotonic()
            self.thread.join()
            self.waited_s += time.monotonic() - started
            self.thread = None
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    def put_final(self, folder: Path) -> str:
        """The final model, after the last checkpoint's upload: its location."""
        self.wait()
        started = time.monotonic()
        location = self.store.put_dir(folder)
        self.waited_s += time.monotonic() - started if self.in_background else 0.0
        return location

    def wait_quietly(self) -> None:
        """When training failed or stopped: the upload under way finishes (and its checkpoint is
        recorded) before the process exits, which would end its thread; its own failure is only
        logged, the one that ends the attempt is what is reported."""
        try:
            self.wait()
        except BaseException as exc:
            print(f"the last checkpoint's upload failed: {exc!r}", file=sys.stderr)

    def forget(self, folders: list[Path]) -> None:
        """Checkpoints the Trainer rotated out: their objects go too. A failed deletion is only
        logged (the objects stay behind, listed as deleted): it fails neither the upload nor the
        attempt."""
        for folder in folders:
            try:
                self.store.delete(self.store.location_of(folder))
            except Exception as exc:
                print(f"could not delete the rotated-out checkpoint {folder.name} from the store: {exc!r}",
                      file=sys.stderr)
