"""The HTTP side of the client commands: requests, errors worth one line, pages and the stream."""

import time
from collections.abc import Iterator

import httpx

from traindock import sse
from traindock.settings import get_settings

FINISHED = {"succeeded", "failed", "cancelled", "paused"}  # a stream ends at these
RECONNECTS = 5


class CliError(Exception):
    """An expected failure: its message is the one line the user sees."""


def api(url: str | None = None) -> httpx.Client:
    from traindock.keys import saved_key

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
