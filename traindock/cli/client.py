"""The HTTP side of the client commands: requests, errors worth one line, pages and the stream."""

import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from traindock.cli import sse
from traindock.settings import get_settings

FINISHED = {"succeeded", "failed", "cancelled", "paused", "early_stopped"}  # a stream ends at these
RECONNECTS = 5


class CliError(Exception):
    """An expected failure: its message is the one line the user sees."""


def api(url: str | None = None) -> httpx.Client:
    from traindock.cli.keys import saved_key

    settings = get_settings()
    key = saved_key(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url or settings.api_url, timeout=30, headers=headers)


def error_detail(response: httpx.Response) -> str:
    """The API's `detail`; a 422's one line per field."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text.strip() or response.reason_phrase
    if isinstance(detail, list):
        return "\n".join(
            f"  {'.'.join(str(part) for part in d.get('loc', []) if part != 'body') or 'request'}: {d.get('msg')}"
            for d in detail
        )
    return str(detail)


def check(response: httpx.Response):
    if response.is_error:
        detail = error_detail(response)
        separator = ":\n" if "\n" in detail or detail.startswith("  ") else ": "
        raise CliError(f"error {response.status_code}{separator}{detail}")
    return response.json() if response.content else {}


def pages(client: httpx.Client, path: str, params: dict | None = None) -> Iterator[dict]:
    """Every item of a paginated list, following next_cursor."""
    params = dict(params or {})
    while True:
        page = check(client.get(path, params=params))
        yield from page["items"]
        if not page.get("next_cursor"):
            return
        params["cursor"] = page["next_cursor"]


def follow(client: httpx.Client, job_id: int) -> Iterator[sse.StreamEvent]:
    """The job's stream from the start until its terminal status, reconnecting after a dropped
    connection from the last event received (Last-Event-ID), so nothing is missed or repeated."""
    last_id, failures, finished = None, 0, False
    while not finished:
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        try:
            with client.stream("GET", f"/jobs/{job_id}/stream", headers=headers,
                               timeout=httpx.Timeout(30, read=60)) as response:
                if response.is_error:
                    response.read()
                    check(response)
                for event in sse.parse(response.iter_lines()):
                    failures = 0
                    last_id = event.id if event.id is not None else last_id
                    finished = event.type == "status" and event.data.get("status") in FINISHED
                    yield event
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
            failures += 1
            if failures > RECONNECTS:
                raise CliError(f"lost the stream of job {job_id} {RECONNECTS} times; try again") from None
            time.sleep(1)


def attempt_log(client: httpx.Client, job_id: int, attempt: int | None = None, rank: int | None = None,
                offset: int = 0) -> bytes | None:
    """The attempt's training log (default the latest attempt) from byte `offset`, as the API
    serves it; None when it has none (not started yet, or unknown attempt or rank)."""
    params = {name: value for name, value in (("attempt", attempt), ("rank", rank), ("offset", offset)) if value}
    response = client.get(f"/jobs/{job_id}/logs", params=params, timeout=httpx.Timeout(30, read=300))
    if response.status_code == 404:
        return None
    if response.is_error:
        check(response)
    return response.content


def follow_log(client: httpx.Client, job_id: int, attempt: int | None = None, rank: int | None = None,
               poll_s: float = 1.0) -> Iterator[tuple[int, bytes]]:
    """(attempt, bytes) of the training log as it grows, until the job rests and all of it was
    read. Without `attempt`: the latest attempt's, going on to the next one when the job restarts
    (after the rest of the earlier one)."""
    shown, offset = None, 0
    while True:
        job = check(client.get(f"/jobs/{job_id}"))
        number = attempt or max((a["attempt"] for a in job.get("attempts") or []), default=1)
        if shown is not None and number != shown and (rest := attempt_log(client, job_id, shown, rank, offset)):
            yield shown, rest
        if number != shown:
            shown, offset = number, 0
        chunk = attempt_log(client, job_id, number, rank, offset)
        if chunk:
            offset += len(chunk)
            yield number, chunk
        elif job["status"] in FINISHED:
            return
        else:
            time.sleep(poll_s)


class _ChunkReader(io.RawIOBase):
    """A file object over a response's chunks, so tarfile can read the archive as it arrives."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.rest = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.rest:
            self.rest = next(self.chunks, b"")
        size = min(len(buffer), len(self.rest))
        buffer[:size], self.rest = self.rest[:size], self.rest[size:]
        return size


def unpack(client: httpx.Client, path: str, folder: Path) -> list[str]:
    """Stream the tar at `path` into `folder` (memory stays at one chunk); the archive's top-level
    names. Only plain files and folders inside `folder` are written (tarfile's data filter)."""
    with client.stream("GET", path, timeout=httpx.Timeout(30, read=300)) as response:
        if response.is_error:
            response.read()
            check(response)
        top = []
        try:
            with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(response.iter_bytes())), mode="r|") as archive:
                for member in archive:
                    archive.extract(member, folder, filter="data")
                    if "/" not in member.name:
                        top.append(member.name)
        except tarfile.TarError as error:
            raise CliError(f"the download broke off ({error}); run it again") from None
        except OSError as error:
            raise CliError(f"cannot write into {folder}: {error.strerror or error}") from None
        return top
