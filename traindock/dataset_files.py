"""Dataset files on disk and their rows: nothing stays behind that no row owns.

An upload is staged as `upload-*.part`, renamed to `<id>.jsonl` once its row is flushed, and
kept only if that row commits. The process doing this holds an exclusive lock on the file until
the transaction has ended, so a file nobody holds a lock on is either committed (its row exists)
or left by a process that died (kill -9 mid-upload): the sweep removes those."""

import fcntl
import logging
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO

from db.datasets import existing_dataset_ids
from db.engine import session_scope
from traindock.settings import Settings

log = logging.getLogger(__name__)

STAGED = "upload-*.part"
FINAL_NAME = re.compile(r"(\d+)\.jsonl")


class HeldFile:
    """An exclusive lock on a dataset file, for as long as its upload's transaction lasts."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def still_names(self, path: Path) -> bool:
        try:
            return os.stat(path).st_ino == os.fstat(self.fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def stage_upload(folder: Path) -> tuple[Path, BinaryIO, HeldFile]:
    """A new staging file, open for writing and locked. A sweep may remove it between its creation
    and the lock: then it is made again."""
    while True:
        path = folder / f"upload-{uuid.uuid4().hex}.part"
        out = path.open("xb")
        try:
            held = HeldFile(path)
        except FileNotFoundError:
            out.close()
            continue
        if held.still_names(path):
            return path, out, held
        held.release()
        out.close()


def _unheld(path: Path) -> int | None:
    """A descriptor holding the file's lock, or None when someone else holds it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def sweep_dataset_files(settings: Settings) -> list[Path]:
    """Remove staging files and dataset files without a row that no live upload holds; returns them."""
    folder = settings.datasets_dir
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.glob(STAGED):
        if (fd := _unheld(path)) is not None:
            path.unlink(missing_ok=True)
            os.close(fd)
            removed.append(path)
    finals = {int(m.group(1)): p for p in folder.glob("*.jsonl") if (m := FINAL_NAME.fullmatch(p.name))}
    if finals:
        with session_scope() as session:
            owned = existing_dataset_ids(session, list(finals))
        for dataset_id, path in finals.items():
            if dataset_id in owned or (fd := _unheld(path)) is None:
                continue
            with session_scope() as session:  # committed since the first look?
                orphan = not existing_dataset_ids(session, [dataset_id])
            if orphan:
                path.unlink(missing_ok=True)
                removed.append(path)
            os.close(fd)
    if removed:
        log.warning("removed dataset files no row owns: %s", ", ".join(p.name for p in removed))
    return removed
