"""A file that may still grow (a running attempt's log), streamed up to its size when opened."""

from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 16


def file_chunks(path: Path, offset: int = 0) -> Iterator[bytes]:
    """From byte `offset` (what a reader following the file already has) to the size at opening."""
    with path.open("rb") as stream:
        stream.seek(offset)
        left = path.stat().st_size - offset
        while left > 0 and (chunk := stream.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
