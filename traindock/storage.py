"""Where datasets, checkpoints, final models and logs are kept: the one way the API and the workers
reach those files (after Determined's storage managers: save locally, then upload).

The store mirrors the data folder's layout (`datasets/`, `jobs/tenant-<id>/<output>/`,
`logs/job-<id>/`). A file is named by its *location*: a path under the data folder for the local
store (what the database held before there was a store), a key under the bucket's prefix for S3.
Every process writes into its own data folder first; `put_*` makes that visible to every other
machine, `fetch_*` brings it into this machine's data folder. For the local store both are no-ops:
the data folder is the store, and nothing is copied.

TRAINDOCK_STORAGE_URL picks the backend: unset (or a folder) for the local data folder,
`s3://bucket/prefix` for an S3-compatible store reached with the standard AWS_* variables
(AWS_ENDPOINT_URL for MinIO, Ceph or R2)."""

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CHUNK = 1 << 20


class StorageUnavailable(Exception):
    """The store did not take or give a file within the time allowed."""


class StorageRefused(Exception):
    """The store answers but refuses us (wrong credentials, no such bucket): retrying will not help."""


@dataclass(frozen=True)
class Entry:
    """A file under a location: its path relative to it, size and modification time."""

    name: str
    size: int
    mtime: float
    etag: str | None = None  # the store's (S3), which tells a changed object from the copy here


class LocalStore:
    """The data folder itself."""

    name = "local"
    copies = False  # the data folder is the store: nothing is uploaded or fetched

    def __init__(self, root: Path):
        self.root = root

    def describe(self) -> str:
        return "the local data folder"

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def location_of(self, path: Path) -> str:
        return str(path)

    def local_path(self, location: str) -> Path:
        return Path(location) if Path(location).is_absolute() else self.root / location

    def put_file(self, path: Path, move: bool = False, patient: bool = True) -> str:
        return str(path)

    def put_dir(self, folder: Path, last: str | None = None) -> str:
        return str(folder)

    def fetch_dir(self, location: str) -> Path:
        return self.local_path(location)

    def fetch_file(self, location: str, target: Path | None = None, reuse: bool = False) -> Path:
        return self.local_path(location)

    def exists(self, location: str) -> bool:
        return self.local_path(location).exists()

    def size(self, location: str) -> int | None:
        path = self.local_path(location)
        return path.stat().st_size if path.is_file() else None

    def chunks(self, location: str, offset: int = 0) -> Iterator[bytes]:
        """From byte `offset` to the size at opening (a log may still grow). FileNotFoundError
        when there is no such file (raised at the call, not at the first chunk)."""
        stream = self.local_path(location).open("rb")
        return _file_chunks(stream, offset)

    def entries(self, location: str) -> list[Entry]:
        folder = self.local_path(location)
        if not folder.is_dir():
            return []
        return [Entry(p.relative_to(folder).as_posix(), (s := p.stat()).st_size, s.st_mtime)
                for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()]

    def delete(self, location: str) -> None:
        path = self.local_path(location)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _file_chunks(stream, offset: int) -> Iterator[bytes]:
    with stream:
        stream.seek(offset)
        left = os.fstat(stream.fileno()).st_size - offset
        while left > 0 and (chunk := stream.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk


class S3Store:
    """An S3-compatible bucket, under a prefix; this machine's data folder holds what it wrote or
    fetched."""

    name = "s3"
    copies = True

    def __init__(self, url: str, root: Path, retry_s: float):
        import boto3
        from botocore.config import Config

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix, self.root, self.retry_s = bucket, prefix.strip("/"), root, retry_s
        self.client = boto3.client("s3", config=Config(
            retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60,
            # TLS and the store's own checks cover integrity; checksums of every part cost the
            # training process CPU beside its steps.
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        ))
        from boto3.s3.transfer import TransferConfig

        # Multipart above 16 MiB, in 16 MiB parts: memory stays flat whatever the file's size.
        self.transfer = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20,
                                       max_concurrency=4)

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{where} at {self.client.meta.endpoint_url}"

    def check(self) -> None:
        """Raises StorageRefused (credentials, bucket) or StorageUnavailable (unreachable)."""
        try:
            self._once(lambda: self.client.head_bucket(Bucket=self.bucket))
        except FileNotFoundError:
            raise StorageRefused(f"{self.describe()} refused: NoSuchBucket") from None

    # ---- locations and keys -------------------------------------------------------------------

    def location_of(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def local_path(self, location: str) -> Path:
        return self.root / location

    def _key(self, location: str) -> str:
        return f"{self.prefix}/{location}" if self.prefix else location

    # ---- writing ----------------------------------------------------------------------------------

    def put_file(self, path: Path, move: bool = False, patient: bool = True) -> str:
        """`move`: this machine keeps no copy; not `patient`: one try (the next will do)."""
        location = self.location_of(path)

        def upload() -> None:
            if path.stat().st_size < self.transfer.multipart_threshold:  # one request, no transfer threads
                # Read whole (under 16 MiB): a log still growing is sent as it was, its length exact.
                self.client.put_object(Bucket=self.bucket, Key=self._key(location), Body=path.read_bytes())
            else:
                self.client.upload_file(str(path), self.bucket, self._key(location), Config=self.transfer)

        self._retrying(f"uploading {location}", upload) if patient else self._once(upload)
        if move:
            path.unlink(missing_ok=True)
        return location

    def put_dir(self, folder: Path, last: str | None = None) -> str:
        """Every file of `folder`; `last` (e.g. trainer_state.json) goes last, so its presence
        means the folder is whole."""
        files = sorted((p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()),
                       key=lambda p: (p.name == last, str(p)))
        for path in files:
            self.put_file(path)
        return self.location_of(folder)

    def delete(self, location: str) -> None:
        """The object at `location` and every object under `location/`."""
        key = self._key(location)
        keys = [key] + [item["Key"] for item in self._list(key.rstrip("/") + "/")]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self._retrying(f"deleting {location}", lambda b=batch: self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": b, "Quiet": True}))

    # ---- reading -----------------------------------------------------------------------------------

    def fetch_file(self, location: str, target: Path | None = None, reuse: bool = False) -> Path:
        """Into `target` (default: its place in this data folder); `reuse`: a target already there
        (a cache named by the content's hash) is taken as it is."""
        target = target or self.local_path(location)
        if reuse and target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: two processes fetching the same file (a shared cache) never write
        # into one partial file; the last complete one wins, whole.
        partial = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
        try:
            self._retrying(f"downloading {location}", lambda: self.client.download_file(
                self.bucket, self._key(location), str(partial), Config=self.transfer))
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def fetch_dir(self, location: str) -> Path:
        """The folder as the store has it now: a copy here that differs (a checkpoint of a timeline
        replaced on another machine, a final model rewritten by a resumed job) is fetched again,
        file by file (size and ETag); files the store no longer has are removed. What the store's
        listing was when this copy last matched it is kept beside the folder, so that an unchanged
        folder costs one listing, without reading its files."""
        folder = self.local_path(location)
        entries = self.entries(location)
        if not entries:
            return folder
        listing = json.dumps([[e.name, e.size, e.etag] for e in entries])
        marker = folder.parent / f".{folder.name}.fetched"
        if folder.is_dir() and marker.is_file() and marker.read_text() == listing and all(
                (folder / e.name).is_file() and (folder / e.name).stat().st_size == e.size for e in entries):
            return folder
        for entry in entries:
            local = folder / entry.name
            if not (local.is_file() and self._same_content(local, entry)):
                self.fetch_file(f"{location}/{entry.name}")
        listed = {e.name for e in entries}
        for path in [p for p in folder.rglob("*")
                     if p.is_file() and not p.is_symlink() and p.relative_to(folder).as_posix() not in listed]:
            path.unlink(missing_ok=True)
        partial = marker.with_name(f"{marker.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
        partial.write_text(listing)
        os.replace(partial, marker)
        return folder

    def _same_content(self, path: Path, entry: Entry) -> bool:
        """`path` holds what the store's object holds: same size, and the ETag S3 computes (MD5,
        or for a multipart upload the MD5 of its parts' MD5s, in put_file's part size). A store whose
        ETags are computed otherwise never matches: the file is fetched again, never kept stale."""
        if path.stat().st_size != entry.size or not entry.etag:
            return False
        whole, _, parts = entry.etag.strip('"').partition("-")
        part_size = self.transfer.multipart_chunksize if parts else CHUNK
        md5, digests = hashlib.md5(usedforsecurity=False), []
        with path.open("rb") as stream:
            while chunk := stream.read(part_size):
                md5.update(chunk)
                digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
        if not parts:
            return md5.hexdigest() == whole
        return (str(len(digests)) == parts
                and hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() == whole)

    def exists(self, location: str) -> bool:
        return self.size(location) is not None or bool(self.entries(location))

    def size(self, location: str) -> int | None:
        try:
            head = self._retrying(f"looking up {location}",
                                  lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(location)))
        except FileNotFoundError:
            return None
        return head["ContentLength"]

    def chunks(self, location: str, offset: int = 0) -> Iterator[bytes]:
        size = self.size(location)
        if size is None:
            raise FileNotFoundError(location)
        if offset >= size:
            return iter(())
        answer = self._retrying(f"reading {location}", lambda: self.client.get_object(
            Bucket=self.bucket, Key=self._key(location), Range=f"bytes={offset}-{size - 1}"))
        return _body_chunks(answer["Body"])

    def entries(self, location: str) -> list[Entry]:
        prefix = self._key(location).rstrip("/") + "/"
        return sorted((Entry(item["Key"][len(prefix):], item["Size"], item["LastModified"].timestamp(),
                             item.get("ETag"))
                       for item in self._list(prefix)), key=lambda e: e.name)

    def _list(self, prefix: str) -> list[dict]:
        def listed() -> list[dict]:
            items = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                items += page.get("Contents", [])
            return items

        return self._retrying(f"listing {prefix}", listed)

    # ---- faults -------------------------------------------------------------------------------------

    def _once(self, call):
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except S3UploadFailedError as exc:  # boto3's upload_file wraps the store's answer in this
            refused = any(code in str(exc) for code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                                         "NoSuchBucket"))
            raise (StorageRefused if refused else StorageUnavailable)(f"{self.describe()}: {exc}") from exc
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(str(exc)) from None
            if status in (401, 403) or code in ("NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                                 "AccessDenied"):
                reason = code if code and not code.isdigit() else f"{status} (wrong credentials, or no access to the bucket)"
                raise StorageRefused(f"{self.describe()} refused: {reason}") from None
            raise StorageUnavailable(f"{self.describe()}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"{self.describe()} is unreachable: {exc}") from exc

    def _retrying(self, what: str, call):
        """Unreachable: retried with backoff (1 s doubling to 30 s) for up to retry_s."""
        deadline = time.monotonic() + self.retry_s
        delay = 1.0
        while True:
            try:
                return self._once(call)
            except StorageUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise StorageUnavailable(f"{what}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 30.0)


def _body_chunks(body) -> Iterator[bytes]:
    """The response's body a chunk at a time, its connection closed however the reader stops (a
    client gone mid-download closes the generator)."""
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


@lru_cache
def open_store(url: str | None, root: Path, retry_s: float):
    """One store (and its client, which keeps its connections) per setting."""
    return S3Store(url, root, retry_s) if url else LocalStore(root)


def get_store():
    from traindock.settings import get_settings

    settings = get_settings()
    return open_store(settings.storage_url, settings.root, settings.storage_retry_s)
