"""A metric series thinned for a chart, computed in the database: per name, the first and last
step and the lowest and highest value of each of equal step ranges between them."""

from sqlalchemy import Float, Row, cast, func, select, text
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session

from db.metrics import POINT_COLUMNS
from db.models import MetricPoint

# Every name of a job, one index probe per name (a loose index scan) instead of reading each point.
SERIES_NAMES = text("""
WITH RECURSIVE series(name) AS (
    SELECT min(name) FROM metric_points WHERE job_id = :job_id
    UNION ALL
    SELECT (SELECT min(name) FROM metric_points WHERE job_id = :job_id AND name > series.name)
    FROM series WHERE series.name IS NOT NULL
)
SELECT name FROM series WHERE name IS NOT NULL
""")


def series_names(session: Session, job_id: int) -> list[str]:
    return list(session.scalars(SERIES_NAMES, {"job_id": job_id}))


def downsample(
    session: Session, job_id: int, *, names: list[str] | None, min_step: int | None, max_step: int | None,
    max_points: int,
) -> list[Row]:
    """At most `max_points` points (POINT_COLUMNS) per name (`max_points` >= 4), ordered by step, then name. A
    series no longer than (max_points - 2) // 2 comes back whole."""
    buckets = (max_points - 2) // 2
    kept: list[Row] = []
    for name in sorted(set(names or series_names(session, job_id))):
        in_range = _in_range(job_id, name, min_step, max_step)
        first, last = session.execute(select(func.min(MetricPoint.step), func.max(MetricPoint.step))
                                      .where(*in_range)).one()
        if first is None:
            continue
        width = -(-(last - first + 1) // buckets)  # ceiling: `buckets` ranges cover first..last
        steps = {first, last} | _extreme_steps(session, in_range, (MetricPoint.step - first) // width)
        kept += session.execute(select(*POINT_COLUMNS).where(*in_range, MetricPoint.step.in_(steps)))
    return sorted(kept, key=lambda point: (point.step, point.name))


def _in_range(job_id: int, name: str, min_step: int | None, max_step: int | None) -> list:
    conditions = [MetricPoint.job_id == job_id, MetricPoint.name == name]
    if min_step is not None:
        conditions.append(MetricPoint.step >= min_step)
    if max_step is not None:
        conditions.append(MetricPoint.step <= max_step)
    return conditions


def _extreme_steps(session: Session, in_range: list, bucket) -> set[int]:
    """The steps of each bucket's lowest and highest value, in one pass over the series."""
    if session.get_bind().dialect.name == "postgresql":
        # Arrays compare element by element: min([value, step]) is the lowest value with its step.
        pair = array([MetricPoint.value, cast(MetricPoint.step, Float)])
        rows = session.execute(select(func.min(pair), func.max(pair)).where(*in_range).group_by(bucket))
        return {int(extreme[1]) for row in rows for extreme in row}
    # SQLite: a bare column beside a lone min() or max() comes from the row holding that extreme.
    steps: set[int] = set()
    for extreme in (func.min, func.max):
        steps.update(session.scalars(select(MetricPoint.step, extreme(MetricPoint.value)).where(*in_range)
                                     .group_by(bucket)))
    return steps
