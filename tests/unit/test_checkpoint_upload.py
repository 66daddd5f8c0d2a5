"""worker/checkpoint_upload.py with an object store (a fake one): a failed clean-up of rotated-out
checkpoints fails nothing; an upload under way when training fails is finished and recorded."""

import threading
from pathlib import Path

import pytest

import worker.checkpoint_upload
from traindock.storage import StorageUnavailable
from worker.checkpoint_upload import CheckpointUploads


class Store:
    copies = True

    def __init__(self):
        self.release = threading.Event()
        self.fail_upload = False

    def location_of(self, folder: Path) -> str:
        return folder.name

    def put_dir(self, folder: Path, last=None) -> str:
        self.release.wait(5)
        if self.fail_upload:
            raise StorageUnavailable("the store is unreachable")
        return folder.name

    def delete(self, location: str) -> None:
        raise StorageUnavailable(f"deleting {location}: the store is unreachable")


@pytest.fixture
def uploads(monkeypatch) -> CheckpointUploads:
    store = Store()
    monkeypatch.setattr(worker.checkpoint_upload, "get_store", lambda: store)
    return CheckpointUploads()


def test_a_failed_deletion_of_rotated_out_checkpoints_is_only_logged(uploads, capsys):
    recorded = []

    def record(location: str) -> None:
        recorded.append(location)
        uploads.forget([Path("checkpoint-2")])

    uploads.store.release.set()
    uploads.submit(Path("checkpoint-4"), record)
    uploads.wait()  # raised StorageUnavailable before: the attempt failed
    assert recorded == ["checkpoint-4"]
    assert "could not delete the rotated-out checkpoint checkpoint-2" in capsys.readouterr().err


def test_waiting_quietly_finishes_the_upload_under_way_and_logs_its_failure(uploads, capsys):
    recorded = []
    uploads.submit(Path("checkpoint-4"), recorded.append)
    threading.Timer(0.2, uploads.store.release.set).start()
    uploads.wait_quietly()
    assert recorded == ["checkpoint-4"]

    uploads.store.fail_upload = True
    uploads.submit(Path("checkpoint-6"), recorded.append)
    uploads.wait_quietly()
    assert recorded == ["checkpoint-4"] and "the last checkpoint's upload failed" in capsys.readouterr().err
