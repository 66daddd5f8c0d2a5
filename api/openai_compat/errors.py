"""OpenAI's error envelope, {"error": {"message", "type", "param", "code"}}, for /v1 routes only
(the native API keeps FastAPI's shape). The client retries 408, 409, 429 and 5xx unless told not
to: a 409 here is a refusal that repeating cannot change, so it says `x-should-retry: false`."""

import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.lifecycle import TransitionRefused
from jobspec import explain_unknown_fields
from traindock.storage import StorageRefused, StorageUnavailable

ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               409: "conflict_error", 413: "invalid_request_error", 429: "rate_limit_error"}
NO_RETRY = {"x-should-retry": "false"}


class OpenAIError(Exception):
    """A /v1 refusal with the envelope's fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def envelope(status: int, message: str, *, param: str | None = None, code: str | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    retry = NO_RETRY if status == 409 else {}
    return JSONResponse(status_code=status, headers={**(headers or {}), **retry},
                        content={"error": {"message": message, "type": kind, "param": param, "code": code}})


# Parts pydantic adds to a location inside a union ("literal['auto']", "int", "function-after[...]").
UNION_BRANCH = re.compile(r"literal\[.*\]|int|float|str|bool|(constrained|function)-.*|.*\[.*\]")


def _param(loc: list | tuple) -> str | None:
    """'training.learning_rate' from ('body', 'training', 'learning_rate')."""
    parts = [str(part) for part in loc
             if part not in ("body", "query", "path") and not UNION_BRANCH.fullmatch(str(part))]
    return ".".join(parts) or None


async def openai_error_handler(_request: Request, exc: OpenAIError) -> JSONResponse:
    return envelope(exc.status, exc.message, param=exc.param, code=exc.code)


async def http_error_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    code = {404: "not_found", 409: "conflict", 429: "rate_limit_exceeded"}.get(exc.status_code)
    return envelope(exc.status_code, detail, code=code, headers=getattr(exc, "headers", None))


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """OpenAI answers a bad parameter with 400; every problem is in the message, the first names
    `param`."""
    errors: list[dict[str, Any]] = explain_unknown_fields(list(exc.errors()))
    # Of a union's errors ("auto" or a number), the one about the number says what is wrong.
    errors = [e for e in errors if e.get("type") != "literal_error"] or errors
    message = "; ".join(f"{_param(error.get('loc', ())) or 'body'}: {error.get('msg')}" for error in errors)
    first = errors[0] if errors else {}
    return envelope(400, message or "invalid request", param=_param(first.get("loc", ())),
                    code=str(first.get("type", "invalid_request")))


async def transition_refused_handler(_request: Request, exc: TransitionRefused) -> JSONResponse:
    return envelope(409, str(exc), code="invalid_state")


async def storage_unavailable_handler(_request: Request, exc: Exception) -> JSONResponse:
    return envelope(503, "the object store is unavailable; retry shortly", code="storage_unavailable",
                    headers={"Retry-After": "5"})


HANDLERS = {
    StorageUnavailable: storage_unavailable_handler,
    StorageRefused: storage_unavailable_handler,
    OpenAIError: openai_error_handler,
    StarletteHTTPException: http_error_handler,
    RequestValidationError: validation_error_handler,
    TransitionRefused: transition_refused_handler,
}
