"""Metric points keyed by (job, name, step): a repeated step replaces its earlier value. Each write
rewrites the summaries of the blocks it touched (db/metric_blocks.py) in the same transaction."""

from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, delete, or_, select, tuple_
from sqlalchemy.orm import Session

from db.events import METRICS_LOGGED, add_event
from db.metric_blocks import BLOCK, forget_blocks_after, refresh_blocks
from db.models import MetricPoint, utcnow
from db.sequence import next_seq
from db.upsert import upsert


def record_metric_points(
    session: Session, job_id: int, run_id: int, points: list[tuple[int, float | None, dict[str, float]]]
) -> None:
    """Many steps' (step, epoch, values) at once (the training process's batched writes), under
    one stream number."""
    if not any(values for _, _, values in points):
        return
    now, seq = utcnow(), next_seq(session, job_id)
    rows = [
        {"job_id": job_id, "run_id": run_id, "name": name, "step": step, "epoch": epoch,
         "value": float(value), "seq": seq, "created_at": now}
        for step, epoch, values in points for name, value in values.items()
    ]
    upsert(session, MetricPoint, rows, keys=["job_id", "name", "step"],
           update=["run_id", "epoch", "value", "seq", "created_at"])
    refresh_blocks(session, job_id, {(row["name"], row["step"] // BLOCK) for row in rows})
    for step, epoch, values in points:
        if values:  # the points replace earlier ones; the events are the log of what was reported
            described = ", ".join(f"{name} {value:.4g}" for name, value in values.items())
            add_event(session, job_id, METRICS_LOGGED, f"step {step}: {described}", run_id=run_id,
                      data={"step": step, "epoch": epoch, "values": {k: float(v) for k, v in values.items()}})


# What a page shows of a point: rows of these columns cost far less to load than whole objects.
POINT_COLUMNS = (MetricPoint.step, MetricPoint.epoch, MetricPoint.name, MetricPoint.value, MetricPoint.created_at,
                 MetricPoint.run_id)


def cursor_of(point: MetricPoint) -> str:
    return f"{point.step}:{point.name}"


def parse_cursor(cursor: str | None) -> tuple[int, str] | None:
    """'<step>:<name>' of the last point seen; anything else starts from the beginning."""
    if not cursor:
        return None
    step, _, name = cursor.partition(":")
    # ASCII digits only ('²'.isdigit() is true but int() refuses it), and no larger than a step can be.
    if not (step.isascii() and step.isdigit()) or int(step) > 2**31 - 1:
        return None
    return int(step), name


def list_metrics(
    session: Session,
    job_id: int,
    *,
    names: list[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    after: tuple[int, str] | None = None,
    limit: int = 1000,
) -> list[Row]:
    """Points (POINT_COLUMNS) ordered by step, then name; `after` is the (step, name) of the last
    point seen."""
    return list(session.execute(metrics_query(job_id, names=names, min_step=min_step, max_step=max_step,
                                              after=after, limit=limit)))


def metrics_query(
    job_id: int,
    *,
    names: list[str] | None,
    min_step: int | None,
    max_step: int | None,
    after: tuple[int, str] | None,
    limit: int,
) -> Select:
    query = select(*POINT_COLUMNS).where(MetricPoint.job_id == job_id)
    if names:
        query = query.where(MetricPoint.name.in_(names))
    if min_step is not None:
        query = query.where(MetricPoint.step >= min_step)
    if max_step is not None:
        query = query.where(MetricPoint.step <= max_step)
    if after is not None:
        query = query.where(_after(after, set(names or ())))
    return query.order_by(MetricPoint.step, MetricPoint.name).limit(limit)


def _after(cursor: tuple[int, str], names: set[str]) -> ColumnElement[bool]:
    """Past the cursor in (step, name) order, as conditions an index can start its scan at: a row
    comparison on the (job_id, step, name) index or, for one name, `step >= s` on the
    (job_id, name, step) one (its filter drops at most the cursor's own point). `step > s OR
    (step = s AND name > n)` alone would only be a filter, so a page's cost would grow with its depth."""
    step, name = cursor
    if len(names) == 1:
        return and_(MetricPoint.step >= step, or_(MetricPoint.step > step, MetricPoint.name > name))
    return tuple_(MetricPoint.step, MetricPoint.name) > tuple_(step, name)


def metrics_at_step(session: Session, job_id: int, step: int) -> dict[str, Any]:
    rows = session.scalars(
        select(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step == step)
    )
    return {row.name: row.value for row in rows}


def delete_after(session: Session, job_id: int, step: int) -> int:
    """Forget the points past `step`: a resume from there replaces that part of the run."""
    deleted = session.execute(delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step)).rowcount
    forget_blocks_after(session, job_id, step)
    return deleted
