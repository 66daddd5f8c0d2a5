"""A folder as a tar stream, produced piece by piece: memory stays at one chunk whatever the
folder's size (tarfile only encodes the headers; the data is copied in chunks)."""

import tarfile
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE


def tar_stream(folder: Path, name: str) -> Iterator[bytes]:
    """`folder`'s directories and regular files under `name/`, in sorted order. Links and other
    special files are left out (nothing outside the folder is ever read)."""
    for path in [folder, *sorted(folder.rglob("*"))]:
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            continue
        arcname = name if path == folder else f"{name}/{path.relative_to(folder).as_posix()}"
        with path.open("rb") if path.is_file() else nullcontext() as data:
            info = tarfile.TarInfo(arcname)
            stat = path.stat()
            info.mtime, info.mode = int(stat.st_mtime), 0o755 if path.is_dir() else 0o644
            info.type = tarfile.DIRTYPE if path.is_dir() else tarfile.REGTYPE
            info.size = 0 if path.is_dir() else stat.st_size
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            yield from _data(data, info.size) if data else ()
    yield b"\0" * (2 * BLOCK)  # the end-of-archive marker


def _data(stream, size: int) -> Iterator[bytes]:
    """Exactly `size` bytes (as the header said, even if the file changed meanwhile), padded to
    a whole block."""
    left = size
    while left > 0:
        chunk = stream.read(min(CHUNK, left)) or b"\0" * min(CHUNK, left)
        left -= len(chunk)
        yield chunk
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)

