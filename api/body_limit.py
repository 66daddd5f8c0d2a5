"""Caps the size of every request body (413), counted as it arrives: a client cannot make the
server buffer or spool more than the limit, with or without a Content-Length header."""

import json

from api.auth import OPENAI_PREFIX
from traindock.settings import Settings

MULTIPART_OVERHEAD = 64 * 1024
UPLOAD_PATHS = {"/datasets", "/v1/files"}


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings

    def limit_for(self, scope) -> int:
        if scope["method"] == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS:
            return self.settings.max_upload_bytes + MULTIPART_OVERHEAD
        return self.settings.max_request_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _reject(send, limit, scope)
        received = 0
        started = rejected = False

        async def counting_receive():
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now: whoever reads the body may catch the exception (FastAPI turns
                    # any error while reading a body into a 400), and its answer is dropped.
                    if not started and not rejected:
                        rejected = True
                        await _reject(send, limit, scope)
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started and not rejected:
                await _reject(send, limit, scope)


async def _reject(send, limit: int, scope) -> None:
    message = f"request body larger than the limit of {limit} bytes"
    if scope["path"].startswith(OPENAI_PREFIX):  # the openai client reads its own envelope
        content = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                             "code": "request_too_large"}}
    else:
        content = {"detail": message}
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
