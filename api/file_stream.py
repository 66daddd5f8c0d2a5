"""Stored files as responses, streamed from the store (traindock/storage.py) a chunk at a time."""

from urllib.parse import quote

from fastapi.responses import StreamingResponse

from traindock.storage import get_store


def stored_file_response(location: str, filename: str) -> StreamingResponse:
    """The whole file as an attachment. FileNotFoundError when it is not in the store."""
    quoted = quote(filename)
    disposition = (f'attachment; filename="{filename}"' if quoted == filename
                   else f"attachment; filename*=utf-8''{quoted}")
    return StreamingResponse(get_store().chunks(location), media_type="application/octet-stream",
                             headers={"Content-Disposition": disposition})
