"""Checks an uploaded JSONL file (or JSON array) row by row while copying it to disk, and detects
its format. Nothing is kept unless every row is good."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from itertools import chain
from typing import BinaryIO

from fastapi import UploadFile
from sqlalchemy.orm import Session

from api.json_array import ArrayError, array_elements_as_lines
from db.datasets import add_dataset
from db.hooks import after_commit, after_rollback
from db.models import Dataset
from jobspec.dataset_rows import RowError, row_format
from traindock.dataset_files import HeldFile, stage_upload
from traindock.settings import Settings
from traindock.storage import get_store

CHUNK = 1 << 20


class UploadRejected(Exception):
    def __init__(self, status_code: int, message: str, line: int | None = None, unit: str = "line"):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.line = line
        self.unit = unit  # "line" of a JSONL file, "element" of a JSON array

    @property
    def where(self) -> str | None:
        return f"{self.unit} {self.line}" if self.line else None


@dataclass
class CheckedUpload:
    path: Path
    held: HeldFile  # released once the upload's transaction has ended (traindock/dataset_files.py)
    rows: int
    bytes: int
    sha256: str
    format: str


@dataclass
class Limits:
    max_bytes: int
    max_line_bytes: int
    max_rows: int


def _lines(chunks: Iterator[bytes], max_line_bytes: int):
    """Each line with its newline, exactly as uploaded. A line longer than the limit is refused
    before it is held in memory whole."""
    pending = b""
    number = 0
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            number += 1
            if len(line) > max_line_bytes:
                raise UploadRejected(422, f"longer than the limit of {max_line_bytes} bytes", number)
            yield line + b"\n"
        if len(pending) > max_line_bytes:
            raise UploadRejected(422, f"longer than the limit of {max_line_bytes} bytes", number + 1)
    if pending:
        yield pending


def check_and_store(source: BinaryIO, folder: Path, limits: Limits) -> CheckedUpload:
    """Copy `source` into a temporary file in `folder`, checking each line. Raises UploadRejected
    (and removes the partial file) on the first problem."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = rows = 0
    detected: str | None = None
    chunks = iter(lambda: source.read(CHUNK), b"")
    first = next(chunks, b"")
    chunks = chain([first], chunks)
    # A JSON array is stored as the JSONL of its elements (what the worker reads).
    array = first.lstrip()[:1] == b"["
    unit = "element" if array else "line"
    target, out, held = stage_upload(folder)
    try:
        with out:
            for number, raw in enumerate(_rows(chunks, limits, array), start=1):
                size += len(raw)
                if size > limits.max_bytes:
                    raise UploadRejected(413, f"the file is larger than the limit of {limits.max_bytes} bytes")
                digest.update(raw)
                out.write(raw)
                line = raw.strip()
                if not line:
                    continue
                try:
                    fmt = row_format(json.loads(line.decode("utf-8")))
                except UnicodeDecodeError:
                    raise UploadRejected(422, "not valid UTF-8", number, unit) from None
                except json.JSONDecodeError as exc:
                    raise UploadRejected(422, f"invalid JSON: {exc.msg} at column {exc.colno}", number, unit) from None
                except RowError as exc:
                    raise UploadRejected(422, str(exc), number, unit) from None
                except RecursionError:
                    raise UploadRejected(422, "invalid JSON: nested too deeply", number, unit) from None
                except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
                    raise UploadRejected(422, f"invalid JSON: {exc}", number, unit) from None
                if detected is None:
                    detected = fmt
                elif fmt != detected:
                    raise UploadRejected(422, f"a {fmt} row in a file whose rows are {detected}", number, unit)
                rows += 1
                if rows > limits.max_rows:
                    raise UploadRejected(413, f"the file has more than the limit of {limits.max_rows} rows")
        if rows == 0:
            raise UploadRejected(422, "the file has no rows")
    except BaseException:
        target.unlink(missing_ok=True)
        held.release()
        raise
    return CheckedUpload(target, held, rows, size, digest.hexdigest(), detected)


def _rows(chunks: Iterator[bytes], limits: Limits, array: bool) -> Iterator[bytes]:
    """JSONL lines to check and store: the file's own lines, or a JSON array's elements (its
    uploaded size counted against the limit as it arrives)."""
    if not array:
        yield from _lines(chunks, limits.max_line_bytes)
        return
    received = 0

    def counted():
        nonlocal received
        for chunk in chunks:
            received += len(chunk)
            if received > limits.max_bytes:
                raise UploadRejected(413, f"the file is larger than the limit of {limits.max_bytes} bytes")
            yield chunk

    try:
        yield from array_elements_as_lines(counted(), limits.max_line_bytes)
    except ArrayError as exc:
        raise UploadRejected(422, str(exc), exc.element, "element") from None


def store_dataset(session: Session, settings: Settings, tenant_id: int, upload: UploadFile) -> Dataset:
    """Check an upload and keep it as the tenant's dataset (file and row, or neither); the one way
    in for the native API and the OpenAI-compatible /v1/files."""
    limits = Limits(settings.max_upload_bytes, settings.max_line_bytes, settings.max_dataset_rows)
    checked = check_and_store(upload.file, settings.datasets_dir, limits)
    final = location = None
    store = get_store()
    try:
        dataset = add_dataset(
            session, tenant_id=tenant_id, filename=display_filename(upload.filename), path="",
            format=checked.format, rows=checked.rows, bytes=checked.bytes, sha256=checked.sha256,
        )
        final = settings.datasets_dir / f"{dataset.id}.jsonl"
        checked.path.rename(final)
        # Into the store (multipart for a large file): an object store's copy is the one kept. One
        # try, not the store's retries: this transaction holds the tenant's lock; an unreachable
        # store is a 503 with Retry-After (api/errors.py) and the client retries.
        location = dataset.path = store.put_file(final, move=True, patient=False)
    except BaseException:
        for path in (checked.path, final):
            if path is not None:
                path.unlink(missing_ok=True)
        if location is not None:
            store.delete(location)
        checked.held.release()
        raise

    def discard() -> None:  # no file without its row
        final.unlink(missing_ok=True)
        store.delete(location)
        checked.held.release()

    # The file stays held (the orphan sweep leaves it alone) until its transaction has ended.
    after_commit(session, checked.held.release)
    after_rollback(session, discard)
    return dataset


def display_filename(given: str | None) -> str:
    """The upload's own name, for display: no folders, no NUL (PostgreSQL cannot store it), at most
    the column's 255 characters."""
    name = Path((given or "").replace("\\x00", "")).name[:255]
    return name or "dataset.jsonl"
