"""A file that may still grow (a running attempt's log), streamed up to its size when opened."""

from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 16


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        left = path.stat().st_size
        while left > 0 and (chunk := stream.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
