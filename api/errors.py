"""Client errors in FastAPI's 422 shape (detail[].loc/msg/type), naming the field."""

import logging
from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.lifecycle import TransitionRefused
from jobspec import explain_unknown_fields

log = logging.getLogger(__name__)


class Message(BaseModel):
    """A client error that is not about one field."""

    detail: str


def _answer(description: str) -> dict[str, Any]:
    return {"model": Message, "description": description}


# Documented answers, so that every status code the API can give is in the OpenAPI document.
TOO_LARGE = {413: _answer("Request body larger than the server's limit")}
AUTHENTICATED = {401: _answer("Missing, invalid or revoked API key"), **TOO_LARGE}
NOT_FOUND = {404: _answer("No such thing, or it belongs to another tenant")}


def conflict_answer(description: str) -> dict[int, dict[str, Any]]:
    return {409: _answer(description)}


def problem(loc: tuple | list, msg: str, type: str = "value_error") -> dict[str, Any]:
    """The one problem type: {loc, msg, type}."""
    return {"loc": list(loc), "msg": msg, "type": type}


def body_problems(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Problems found in a request body (the spec's own checks give locs within it): FastAPI's
    "body" prefix goes on here, and only here."""
    return [problem(("body", *p["loc"]), p["msg"], p["type"]) for p in problems]


def unprocessable(problems: list[dict[str, Any]]) -> RequestValidationError:
    return RequestValidationError(problems)


def not_found(what: str, id: int | str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} {id} not found")


def conflict(message: str) -> HTTPException:
    return HTTPException(status_code=409, detail=message)


UNAVAILABLE_RETRY_AFTER_S = 5


def unavailable_response() -> JSONResponse:
    return JSONResponse(status_code=503, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
                        content={"detail": "the database is unreachable; retry shortly (GET /health says which "
                                           "dependency is down)"})


async def database_unavailable_handler(_request: Request, exc: Exception) -> JSONResponse:
    """A database restart or failover is the service's fault and passes: 503 with Retry-After, not
    a 500 that says the request itself broke something."""
    log.warning("database unreachable: %s", exc.__class__.__name__)
    return unavailable_response()


async def storage_unavailable_handler(_request: Request, exc: Exception) -> JSONResponse:
    """The object store unreachable, or refusing the service's credentials: the service's fault,
    not the request's: 503 with Retry-After, never a 500."""
    log.warning("object store failed: %s", exc)
    return storage_unavailable_response()


def storage_unavailable_response() -> JSONResponse:
    return JSONResponse(status_code=503, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
                        content={"detail": "the object store is unavailable; retry shortly (GET /health says "
                                           "which dependency is down)"})


async def transition_refused_handler(_request: Request, exc: TransitionRefused) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = explain_unknown_fields([_strip(error) for error in exc.errors()])
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(detail)})


async def body_error_handler(request: Request, exc: StarletteHTTPException):
    """FastAPI answers 400 when a JSON body cannot even be decoded (not UTF-8, nested too deep);
    that is invalid JSON like any other, so it gets the same 422 json_invalid as a syntax error."""
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, (ValueError, RecursionError)):
        reason = {UnicodeDecodeError: "the body is not UTF-8 encoded JSON",
                  RecursionError: "the JSON is nested too deeply"}.get(type(cause), "the body is not valid JSON")
        return JSONResponse(status_code=422, content={"detail": [problem(["body"], reason, "json_invalid")]})
    return await http_exception_handler(request, exc)


def _strip(error: dict[str, Any]) -> dict[str, Any]:
    """Keep loc/msg/type (and ctx when it explains); drop echoed input, which may be huge."""
    kept = {key: error[key] for key in ("loc", "msg", "type") if key in error}
    if isinstance(error.get("ctx"), dict):
        kept["ctx"] = {key: str(value) for key, value in error["ctx"].items()}
    return kept
