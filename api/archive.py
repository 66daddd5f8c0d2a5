"""A stored folder as a tar stream, produced piece by piece: memory stays at one chunk whatever the
folder's size (tarfile only encodes the headers; the data is copied in chunks), from the local
data folder or an object store alike (traindock/storage.py)."""

import tarfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from traindock.storage import CHUNK, LocalStore

BLOCK = tarfile.BLOCKSIZE


def tar_stream(folder: Path, name: str) -> Iterator[bytes]:
    """A local folder's regular files (links and special files are left out: nothing outside the
    folder is ever read)."""
    return stored_tar_stream(LocalStore(folder), str(folder), name)


def stored_tar_stream(store, location: str, name: str) -> Iterator[bytes]:
    """The files stored under `location`, under `name/` with their folders, in sorted order."""
    entries = store.entries(location)
    folders = sorted({str(parent) for entry in entries for parent in PurePosixPath(entry.name).parents} - {"."})
    stamp = int(max((entry.mtime for entry in entries), default=time.time()))
    yield _header(name, 0, stamp, directory=True)
    for folder in folders:
        yield _header(f"{name}/{folder}", 0, stamp, directory=True)
    for entry in entries:
        yield _header(f"{name}/{entry.name}", entry.size, int(entry.mtime))
        left = entry.size
        for chunk in store.chunks(f"{location}/{entry.name}"):
            chunk = chunk[:left]  # exactly the size the header said, even if the file changed
            left -= len(chunk)
            yield chunk
        while left > 0:
            yield b"\0" * min(CHUNK, left)
            left -= min(CHUNK, left)
        if entry.size % BLOCK:
            yield b"\0" * (BLOCK - entry.size % BLOCK)
    yield b"\0" * (2 * BLOCK)  # the end-of-archive marker


def _header(arcname: str, size: int, mtime: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(arcname)
    info.mtime, info.mode, info.size = mtime, 0o755 if directory else 0o644, size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
