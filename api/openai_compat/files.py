"""/v1/files: the tenant's datasets as OpenAI files (purpose "fine-tune")."""

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile

from api.auth import CurrentTenant
from api.dataset_upload import UploadRejected, store_dataset
from api.deps import SessionDep, SettingsDep
from api.openai_compat import ids
from api.openai_compat.errors import OpenAIError
from api.openai_compat.objects import file_object, page
from db import datasets as queries
from api.file_stream import stored_file_response
from db.hooks import after_commit
from traindock.storage import get_store
from db.models import Dataset

router = APIRouter(prefix="/files", tags=["files"])
PURPOSE = "fine-tune"
Limit = Annotated[int, Query(ge=1, le=10000)]


def dataset_of(session, file_id: str, tenant) -> Dataset:
    """Another tenant's file is 404, as an unknown one is."""
    number = ids.decode(ids.FILE, file_id)
    dataset = queries.get_dataset(session, number, tenant.id) if number else None
    if dataset is None:
        raise OpenAIError(404, f"No such File object: {file_id}", param="id", code="file_not_found")
    return dataset


@router.post("")
def create_file(
    tenant: CurrentTenant, session: SessionDep, settings: SettingsDep,
    file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()],
):
    if purpose != PURPOSE:
        raise OpenAIError(400, f"purpose must be '{PURPOSE}': traindock keeps training files only",
                          param="purpose", code="invalid_purpose")
    try:
        dataset = store_dataset(session, settings, tenant.id, file)
    except UploadRejected as rejected:
        where = f"{rejected.where}: " if rejected.line else ""
        raise OpenAIError(rejected.status_code if rejected.status_code == 413 else 400,
                          f"{where}{rejected.message}", param="file", code="invalid_file") from None
    return file_object(dataset)


@router.get("")
def list_files(
    tenant: CurrentTenant, session: SessionDep,
    after: Annotated[str | None, Query(max_length=64)] = None, limit: Limit = 10000,
    order: Literal["asc", "desc"] = "desc", purpose: Annotated[str | None, Query(max_length=64)] = None,
):
    if purpose not in (None, PURPOSE):
        return page([], False)
    cursor = ids.decode(ids.FILE, after) if after else None
    if after and cursor is None:
        raise OpenAIError(400, f"after must be a file id, not {after!r}", param="after")
    found = queries.list_datasets_paged(session, tenant.id, after=cursor, limit=limit + 1, ascending=order == "asc")
    return page([file_object(dataset) for dataset in found[:limit]], len(found) > limit)


@router.get("/{file_id}")
def retrieve_file(file_id: str, tenant: CurrentTenant, session: SessionDep):
    return file_object(dataset_of(session, file_id, tenant))


@router.get("/{file_id}/content")
def file_content(file_id: str, tenant: CurrentTenant, session: SessionDep):
    dataset = dataset_of(session, file_id, tenant)
    try:
        return stored_file_response(dataset.path, dataset.filename)
    except FileNotFoundError:  # removed from the store by hand
        raise OpenAIError(404, f"the content of file {file_id} is missing from the store", param="id",
                          code="not_found") from None


@router.delete("/{file_id}")
def delete_file(file_id: str, tenant: CurrentTenant, session: SessionDep):
    dataset = dataset_of(session, file_id, tenant)
    if queries.dataset_in_use(session, dataset.id):
        raise OpenAIError(409, f"file {file_id} is used by a queued, running or paused job; cancel it first",
                          code="file_in_use")
    location = dataset.path
    session.delete(dataset)
    after_commit(session, lambda: get_store().delete(location))
    return {"id": file_id, "object": "file", "deleted": True}
