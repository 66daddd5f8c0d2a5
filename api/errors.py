"""Client errors in FastAPI's 422 shape (detail[].loc/msg/type), naming the field."""

from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from jobspec import explain_unknown_fields


def problem(loc: tuple | list, msg: str, type: str = "value_error") -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type}


def unprocessable(problems: list[dict[str, Any]]) -> RequestValidationError:
    return RequestValidationError(problems)


def not_found(what: str, id: int | str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} {id} not found")


def conflict(message: str) -> HTTPException:
    return HTTPException(status_code=409, detail=message)


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = explain_unknown_fields([_strip(error) for error in exc.errors()])
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(detail)})


def _strip(error: dict[str, Any]) -> dict[str, Any]:
    """Keep loc/msg/type (and ctx when it explains); drop echoed input, which may be huge."""
    kept = {key: error[key] for key in ("loc", "msg", "type") if key in error}
    if isinstance(error.get("ctx"), dict):
        kept["ctx"] = {key: str(value) for key, value in error["ctx"].items()}
    return kept
