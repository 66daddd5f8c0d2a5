"""Dataset uploads (JSONL), listing, lookup and deletion."""

from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from api.dataset_upload import Limits, UploadRejected, check_and_store
from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.errors import AUTHENTICATED, NOT_FOUND, Message, conflict, conflict_answer, not_found
from api.pagination import CursorQuery, LimitQuery, Page, next_cursor
from api.schemas import DatasetId
from db import datasets as queries
from db.hooks import after_commit, after_rollback

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
    file: Annotated[UploadFile, File(description="JSONL: alpaca, chat or text rows, one per line.")],
):
    try:
        limits = Limits(settings.max_upload_bytes, settings.max_line_bytes, settings.max_dataset_rows)
        checked = check_and_store(file.file, settings.datasets_dir, limits)
    except UploadRejected as rejected:
        return _rejected(rejected)
    final = None
    try:
        dataset = queries.add_dataset(
            session, tenant_id=tenant.id, filename=_filename(file.filename), path="",
            format=checked.format, rows=checked.rows, bytes=checked.bytes, sha256=checked.sha256,
        )
        final = settings.datasets_dir / f"{dataset.id}.jsonl"
        checked.path.rename(final)
        dataset.path = str(final)
    except BaseException:
        for path in (checked.path, final):
            if path is not None:
                path.unlink(missing_ok=True)
        checked.held.release()
        raise

    def discard() -> None:  # no file without its row
        final.unlink(missing_ok=True)
        checked.held.release()

    after_commit(session, checked.held.release)
    after_rollback(session, discard)
    response.headers["Location"] = f"/datasets/{dataset.id}"
    return dataset


def _filename(given: str | None) -> str:
    """The upload's own name, for display: no folders, no NUL (PostgreSQL cannot store it), at most
    the column's 255 characters."""
    name = Path((given or "").replace("\x00", "")).name[:255]
    return name or "dataset.jsonl"


def _rejected(rejected: UploadRejected) -> JSONResponse:
    if rejected.status_code == 413:
        return JSONResponse(status_code=413, content={"detail": rejected.message})
    loc = ["body", "file"] + ([f"line {rejected.line}"] if rejected.line else [])
    msg = f"line {rejected.line}: {rejected.message}" if rejected.line else rejected.message
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


@router.delete("/{dataset_id}", status_code=204,
               responses={**NOT_FOUND, **conflict_answer("In use by a queued, running or paused job")})
def delete_dataset(dataset_id: DatasetId, tenant: CurrentTenant, session: SessionDep):
    dataset = queries.get_dataset(session, dataset_id, tenant.id)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    if queries.dataset_in_use(session, dataset_id):
        raise conflict(f"dataset {dataset_id} is used by a queued, running or paused job")
    path = Path(dataset.path)
    session.delete(dataset)
    after_commit(session, lambda: path.unlink(missing_ok=True))
    return Response(status_code=204)
