"""Dataset rows: one per uploaded JSONL file."""

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from db.models import Dataset, Job
from db.status import ACTIVE_JOB_STATES, JobStatus


def add_dataset(session: Session, **fields) -> Dataset:
    dataset = Dataset(**fields)
    session.add(dataset)
    session.flush()
    return dataset


def existing_dataset_ids(session: Session, ids: list[int]) -> set[int]:
    return set(session.scalars(select(Dataset.id).where(Dataset.id.in_(ids))))


def get_dataset(session: Session, dataset_id: int, tenant_id: int | None = None) -> Dataset | None:
    """The dataset; with `tenant_id`, only if that tenant owns it."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or (tenant_id is not None and dataset.tenant_id != tenant_id):
        return None
    return dataset


def list_datasets(session: Session, tenant_id: int, *, before: int | None, limit: int) -> list[Dataset]:
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    if before is not None:
        query = query.where(Dataset.id < before)
    return list(session.scalars(query.order_by(Dataset.id.desc()).limit(limit)))


def dataset_in_use(session: Session, dataset_id: int) -> bool:
    """True while a queued, running or paused job needs the file."""
    holding = [*ACTIVE_JOB_STATES, JobStatus.PAUSED]
    uses = or_(Job.dataset_id == dataset_id, Job.spec["validation_dataset_id"].as_integer() == dataset_id)
    return session.scalar(select(exists().where(uses, Job.status.in_(holding))))


def list_datasets_paged(
    session: Session, tenant_id: int, *, after: int | None, limit: int, ascending: bool = False
) -> list[Dataset]:
    """By id, newest first (or oldest first); `after` is the id of the last dataset seen."""
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    if after is not None:
        query = query.where(Dataset.id > after if ascending else Dataset.id < after)
    order = Dataset.id.asc() if ascending else Dataset.id.desc()
    return list(session.scalars(query.order_by(order).limit(limit)))
