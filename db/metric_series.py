"""A metric series thinned for a chart, computed in the database: per name, the first and last
step and the lowest and highest value of each of equal step ranges between them (a tie: its
earliest step).

A long series is read from its block summaries (db/metric_blocks.py): a block whose points all
lie in one range stands for them; of a block that straddles a range's edge, its sub-blocks do, and
only the points of the sub-blocks that straddle it are read. A chart of 1,000,000 points with
`max_points=1000` reads some 15,500 blocks, 4,000 sub-blocks and 4,000 points."""

from sqlalchemy import Float, Integer, Row, Select, and_, any_, bindparam, cast, func, not_, or_, select, text
from sqlalchemy import union_all
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.orm import Session

from db.metric_blocks import BLOCK, SUB_BLOCK, SUBS
from db.metrics import POINT_COLUMNS
from db.models import MetricBlock, MetricPoint

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
    max_points: int, use_blocks: bool = True,
) -> list[Row]:
    """At most `max_points` points (POINT_COLUMNS) per name (`max_points` >= 4), ordered by step, then name. A
    series no longer than (max_points - 2) // 2 comes back whole. `use_blocks=False` reads every point
    (the reference the block summaries must agree with)."""
    buckets = (max_points - 2) // 2
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and use_blocks:
        # The planner cannot estimate the join on block bounds (blocks_query) and would spend 150-250 ms
        # compiling a query of 20 ms; this transaction only.
        session.execute(text("SET LOCAL jit = off"))
    kept: list[Row] = []
    for name in sorted(set(names or series_names(session, job_id))):
        in_range = _in_range(job_id, name, min_step, max_step)
        first, last = session.execute(select(func.min(MetricPoint.step), func.max(MetricPoint.step))
                                      .where(*in_range)).one()
        if first is None:
            continue
        width = -(-(last - first + 1) // buckets)  # ceiling: `buckets` ranges cover first..last
        if width >= BLOCKS_FROM_WIDTH and use_blocks:
            extremes = _extreme_steps_of_blocks(session, job_id, name, first, last, width)
        else:
            extremes = _extreme_steps(session, in_range, (MetricPoint.step - first) // width)
        steps = sorted({first, last} | extremes)
        # One array parameter on PostgreSQL: a thousand bound values cost more to send than to look up.
        wanted = (MetricPoint.step == any_(bindparam("steps", steps, type_=ARRAY(Integer))) if postgres
                  else MetricPoint.step.in_(steps))
        kept += session.execute(select(*POINT_COLUMNS).where(*in_range, wanted))
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
        # Arrays compare element by element: min([value, step]) is the lowest value at its earliest
        # step, max([value, -step]) the highest at its earliest.
        low = array([MetricPoint.value, cast(MetricPoint.step, Float)])
        high = array([MetricPoint.value, cast(-MetricPoint.step, Float)])
        rows = session.execute(select(func.min(low)[2], func.max(high)[2]).where(*in_range).group_by(bucket))
        return {abs(int(step)) for row in rows for step in row}
    # SQLite: a bare column beside a lone min() or max() comes from the row holding that extreme (on a
    # tie, the first met: the earliest step, as the index is read in step order).
    steps: set[int] = set()
    for extreme in (func.min, func.max):
        steps.update(session.scalars(select(MetricPoint.step, extreme(MetricPoint.value)).where(*in_range)
                                     .group_by(bucket)))
    return steps


# Narrower ranges than this are read point by point: most sub-blocks would straddle an edge anyway.
BLOCKS_FROM_WIDTH = 2 * SUB_BLOCK


def _extreme_steps_of_blocks(session: Session, job_id: int, name: str, first: int, last: int, width: int) -> set[int]:
    """What _extreme_steps finds for first..last, from the summaries of the blocks and sub-blocks
    that lie in one bucket and the points of the sub-blocks that straddle a bucket's edge (or
    first..last's)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    rows = session.execute(blocks_query(job_id, name, first, last, width, postgres=postgres))
    if postgres:
        return {abs(int(step)) for row in rows for step in row}
    return {step for low_step, high_step, low, high in rows
            for step, rank in ((low_step, low), (high_step, high)) if rank == 1}


def blocks_query(job_id: int, name: str, first: int, last: int, width: int, *, postgres: bool) -> Select:
    """Each bucket's extremes among: the blocks that lie whole in one bucket, the sub-blocks of the
    other blocks that do, and the points of the sub-blocks that do not."""
    greatest, least = (func.greatest, func.least) if postgres else (func.max, func.min)

    def whole(blocks):
        return and_(blocks.c.first_step >= first, blocks.c.last_step <= last,
                    (blocks.c.first_step - first) // width == (blocks.c.last_step - first) // width)

    def summaries(blocks):
        return select(((blocks.c.first_step - first) // width).label("bucket"), blocks.c.min_value.label("low_value"),
                      blocks.c.min_step.label("low_step"), blocks.c.max_value.label("high_value"),
                      blocks.c.max_step.label("high_step")).where(whole(blocks))

    of_series = (MetricBlock.job_id == job_id, MetricBlock.name == name)
    blocks = (select(MetricBlock).where(*of_series, MetricBlock.size == BLOCK,
                                        MetricBlock.block.between(first // BLOCK, last // BLOCK))
              .cte("blocks"))
    subs = (select(MetricBlock)
            .select_from(blocks.join(MetricBlock, and_(
                *of_series, MetricBlock.size == SUB_BLOCK,
                MetricBlock.block.between(blocks.c.block * SUBS, blocks.c.block * SUBS + SUBS - 1))))
            .where(not_(whole(blocks)))
            .cte("sub_blocks"))
    points = (select((MetricPoint.step - first) // width, MetricPoint.value, MetricPoint.step, MetricPoint.value,
                     MetricPoint.step)
              .select_from(subs.join(MetricPoint, and_(
                  MetricPoint.job_id == job_id, MetricPoint.name == name,
                  MetricPoint.step.between(greatest(subs.c.first_step, first), least(subs.c.last_step, last)))))
              .where(not_(whole(subs))))
    extremes = union_all(summaries(blocks), summaries(subs), points).subquery()
    if postgres:  # as in _extreme_steps
        low = array([extremes.c.low_value, cast(extremes.c.low_step, Float)])
        high = array([extremes.c.high_value, cast(-extremes.c.high_step, Float)])
        return select(func.min(low)[2], func.max(high)[2]).group_by(extremes.c.bucket)  # the steps
    # SQLite: the rows of a union come in no promised order, so a tie is broken by ranking.
    ranked = select(
        extremes.c.low_step, extremes.c.high_step,
        func.row_number().over(partition_by=extremes.c.bucket,
                               order_by=(extremes.c.low_value, extremes.c.low_step)).label("low"),
        func.row_number().over(partition_by=extremes.c.bucket,
                               order_by=(extremes.c.high_value.desc(), extremes.c.high_step)).label("high"),
    ).subquery()
    return select(ranked).where(or_(ranked.c.low == 1, ranked.c.high == 1))
