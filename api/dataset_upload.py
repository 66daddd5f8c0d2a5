"""Checks an uploaded JSONL file line by line while copying it to disk, and detects its format.
Nothing is kept unless every line is good."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jobspec.dataset_rows import RowError, row_format
from traindock.dataset_files import HeldFile, stage_upload

CHUNK = 1 << 20


class UploadRejected(Exception):
    def __init__(self, status_code: int, message: str, line: int | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.line = line


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


def _lines(source: BinaryIO, max_line_bytes: int):
    """Each line with its newline, exactly as uploaded. A line longer than the limit is refused
    before it is held in memory whole."""
    pending = b""
    number = 0
    while chunk := source.read(CHUNK):
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
    target, out, held = stage_upload(folder)
    try:
        with out:
            for number, raw in enumerate(_lines(source, limits.max_line_bytes), start=1):
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
                    raise UploadRejected(422, "not valid UTF-8", number) from None
                except json.JSONDecodeError as exc:
                    raise UploadRejected(422, f"invalid JSON: {exc.msg} at column {exc.colno}", number) from None
                except RowError as exc:
                    raise UploadRejected(422, str(exc), number) from None
                except RecursionError:
                    raise UploadRejected(422, "invalid JSON: nested too deeply", number) from None
                except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
                    raise UploadRejected(422, f"invalid JSON: {exc}", number) from None
                if detected is None:
                    detected = fmt
                elif fmt != detected:
                    raise UploadRejected(422, f"a {fmt} row in a file whose rows are {detected}", number)
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
