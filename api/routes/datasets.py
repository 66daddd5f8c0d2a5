"""Dataset uploads (JSONL), listing, lookup, a preview of the first rows and deletion."""

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Query, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.dataset_upload import UploadRejected, store_dataset
from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.errors import AUTHENTICATED, NOT_FOUND, Message, conflict, conflict_answer, not_found
from api.pagination import CursorQuery, LimitQuery, Page, next_cursor
from api.schemas import DatasetId
from db import datasets as queries
from db.hooks import after_commit
from traindock.storage import get_store

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=AUTHENTICATED)


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    filename: str
    format: str
    rows: int
    bytes: int
    sha256: str
    created_at: datetime


class UploadError(BaseModel):
    detail: list[dict]


@router.post(
    "", status_code=201, response_model=DatasetOut,
    responses={400: {"model": Message, "description": "Malformed multipart body"},
               413: {"model": Message, "description": "File larger than the upload limit, or too many rows"},
               422: {"model": UploadError, "description": "A line that is not a valid row, or no file"}},
)
def upload_dataset(
    tenant: CurrentTenant,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[UploadFile, File(description="JSONL (one row per line) or a JSON array of rows: "
                                                  "alpaca, chat, ShareGPT or text rows, or preference pairs "
                                                  "(prompt, chosen, rejected; or OpenAI's DPO rows).")],
):
    try:
        dataset = store_dataset(session, settings, tenant.id, file)
    except UploadRejected as rejected:
        return _rejected(rejected)
    response.headers["Location"] = f"/datasets/{dataset.id}"
    return dataset


def _rejected(rejected: UploadRejected) -> JSONResponse:
    if rejected.status_code == 413:
        return JSONResponse(status_code=413, content={"detail": rejected.message})
    loc = ["body", "file"] + ([rejected.where] if rejected.line else [])
    msg = f"{rejected.where}: {rejected.message}" if rejected.line else rejected.message
    return JSONResponse(
        status_code=422,
        content={"detail": [{"loc": loc, "msg": msg, "type": "dataset_row", "line": rejected.line}]},
    )


@router.get("", response_model=Page[DatasetOut])
def list_datasets(
    tenant: CurrentTenant,
    session: SessionDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
):
    items = queries.list_datasets(session, tenant.id, before=cursor, limit=limit)
    return Page(items=items, next_cursor=next_cursor(items, limit, lambda d: d.id))


@router.get("/{dataset_id}", response_model=DatasetOut, responses=NOT_FOUND)
def get_dataset(dataset_id: DatasetId, tenant: CurrentTenant, session: SessionDep):
    dataset = queries.get_dataset(session, dataset_id, tenant.id)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    return dataset


class DatasetRows(BaseModel):
    rows: list[dict] = Field(description="The first rows, as stored (JSON arrays are stored as JSONL).")
    total: int = Field(description="How many rows the dataset has.")


@router.get("/{dataset_id}/rows", response_model=DatasetRows, responses=NOT_FOUND)
def preview_dataset(
    dataset_id: DatasetId, tenant: CurrentTenant, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many rows from the start.")] = 10,
):
    """The first rows of a dataset, for a look at what it holds."""
    dataset = queries.get_dataset(session, dataset_id, tenant.id)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    try:
        rows = first_rows(dataset.path, limit)
    except FileNotFoundError:  # removed from the store by hand
        raise not_found("file of dataset", dataset_id) from None
    return DatasetRows(rows=rows, total=dataset.rows)


def first_rows(location: str, limit: int) -> list[dict]:
    """The stored JSONL's first rows (blank lines, which the upload allows, skipped); reads no
    further than they end."""
    rows, pending = [], b""
    for chunk in get_store().chunks(location):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        rows += [json.loads(line) for line in lines if line.strip()]
        if len(rows) >= limit:
            return rows[:limit]
    return rows + ([json.loads(pending)] if pending.strip() else [])


@router.delete("/{dataset_id}", status_code=204,
               responses={**NOT_FOUND, **conflict_answer("In use by a queued, running or paused job")})
def delete_dataset(dataset_id: DatasetId, tenant: CurrentTenant, session: SessionDep):
    dataset = queries.get_dataset(session, dataset_id, tenant.id)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    if queries.dataset_in_use(session, dataset_id):
        raise conflict(f"dataset {dataset_id} is used by a queued, running or paused job")
    location = dataset.path
    session.delete(dataset)
    after_commit(session, lambda: get_store().delete(location))
    return Response(status_code=204)
