"""What a tar archive holds, to compare with a folder."""

import io
import tarfile
from pathlib import Path


def archive_files(content: bytes) -> dict[str, bytes]:
    """{path below the archive's top folder: bytes} of its regular files."""
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        return {member.name.split("/", 1)[1]: tar.extractfile(member).read()
                for member in tar.getmembers() if member.isfile()}


def folder_files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
