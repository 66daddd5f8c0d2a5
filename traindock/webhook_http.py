"""One webhook POST: to an address checked right before it (traindock/webhook_urls.py) and pinned
for the connection, so a name that resolves elsewhere a moment later cannot redirect it; no
redirects followed; short timeouts, so a slow receiver holds a sender for seconds, not minutes.
Only the status code matters: the body is never read."""

import time
from dataclasses import dataclass

import httpx

from traindock.webhook_urls import UnsafeUrl, parse, resolve

CONNECT_TIMEOUT_S = 3.0


@dataclass
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def as_record(self) -> dict:
        return {"status_code": self.status_code, "error": self.error, "duration_ms": self.duration_ms}


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool, timeout_s: float) -> Outcome:
    started = time.monotonic()

    def ended(status_code: int | None, error: str | None) -> Outcome:
        return Outcome(status_code, error, int((time.monotonic() - started) * 1000))

    try:
        _scheme, host, port = parse(url, allow_private=allow_private)
        address = resolve(host, port, allow_private=allow_private)[0]
    except UnsafeUrl as refused:
        return ended(None, f"refused: {refused}")
    pinned = httpx.URL(url).copy_with(host=address)
    timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    request_headers = {**headers, "host": httpx.URL(url).netloc.decode("ascii"), "user-agent": "traindock-webhooks"}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            with client.stream("POST", pinned, content=body, headers=request_headers,
                               extensions={"sni_hostname": host}) as response:
                code = response.status_code
    except httpx.TimeoutException as slow:
        return ended(None, f"timed out after {timeout_s:g} s ({type(slow).__name__})")
    except httpx.HTTPError as failed:
        return ended(None, f"{type(failed).__name__}: {failed}")
    if 300 <= code < 400:
        return ended(code, "redirects are not followed")
    return ended(code, None if 200 <= code < 300 else f"the receiver answered {code}")
