"""Per-block summaries of metric series, so that a chart of a long series reads summaries instead of
its points (db/metric_series.py).

A block is the steps [block * size, block * size + size - 1] of one job's series, at two sizes:
BLOCK (64) steps, and SUB_BLOCK (8) for the blocks a chart's bucket edge cuts. Its row holds how
many points it has, its first and last step, and its lowest and highest value, each at the
earliest step that has it. Every write of points rewrites the blocks it touched from their points
in the same transaction (a point replaced by an upsert, or forgotten with a replaced timeline,
leaves them exact); writes come in step order, so that is a block or two per name and batch.
Points written around db/metrics.py (bulk SQL) need `rebuild_blocks` afterwards."""

from collections.abc import Iterable

from sqlalchemy import Connection, and_, delete, or_, select, text
from sqlalchemy.orm import Session

from db.models import MetricBlock, MetricPoint
from db.upsert import upsert

# Steps per block. Changing them needs a migration that rebuilds every block (as 0009 builds them).
BLOCK = 64
SUB_BLOCK = 8
SUBS = BLOCK // SUB_BLOCK  # sub-blocks of block b: b * SUBS to b * SUBS + SUBS - 1

SUMMARY = ["count", "first_step", "last_step", "min_step", "min_value", "max_step", "max_value"]


def refresh_blocks(session: Session, job_id: int, touched: Iterable[tuple[str, int]]) -> None:
    """Rewrite the (name, block) summaries of a job from their points; a block left without
    points loses its row. One statement of each kind per run of consecutive blocks (usually one)."""
    touched = set(touched)
    names = sorted({name for name, _ in touched})
    rows: list = []
    for first, last in _runs({block for _, block in touched}):
        rows += session.execute(
            select(MetricPoint.name, MetricPoint.step, MetricPoint.value)
            .where(MetricPoint.job_id == job_id, MetricPoint.name.in_(names),
                   MetricPoint.step.between(first * BLOCK, last * BLOCK + BLOCK - 1))
            .order_by(MetricPoint.name, MetricPoint.step)).all()
        session.execute(delete(MetricBlock).where(MetricBlock.job_id == job_id, MetricBlock.name.in_(names), or_(
            and_(MetricBlock.size == BLOCK, MetricBlock.block.between(first, last)),
            and_(MetricBlock.size == SUB_BLOCK, MetricBlock.block.between(first * SUBS, last * SUBS + SUBS - 1)))))
    _write(session, job_id, rows)


def forget_blocks_after(session: Session, job_id: int, step: int) -> None:
    """The points past `step` were deleted: drop the later blocks and rewrite the one cut at `step`."""
    cut = step // BLOCK
    session.execute(delete(MetricBlock).where(MetricBlock.job_id == job_id, or_(
        and_(MetricBlock.size == BLOCK, MetricBlock.block >= cut),
        and_(MetricBlock.size == SUB_BLOCK, MetricBlock.block >= cut * SUBS))))
    rows = session.execute(
        select(MetricPoint.name, MetricPoint.step, MetricPoint.value)
        .where(MetricPoint.job_id == job_id, MetricPoint.step.between(cut * BLOCK, cut * BLOCK + BLOCK - 1))
        .order_by(MetricPoint.name, MetricPoint.step)).all()
    _write(session, job_id, rows)


def _write(session: Session, job_id: int, points: list) -> None:
    """The blocks of both sizes of whole blocks' points."""
    blocks = summarize(job_id, points, BLOCK) + summarize(job_id, points, SUB_BLOCK)
    upsert(session, MetricBlock, blocks, keys=["job_id", "name", "size", "block"], update=SUMMARY)


def summarize(job_id: int, points: Iterable, size: int) -> list[dict]:
    """Block rows of (name, step, value) points, each block's together and in step order."""
    blocks: list[dict] = []
    current = None
    for name, step, value in points:
        block = step // size
        if current is None or current["name"] != name or current["block"] != block:
            current = {"job_id": job_id, "name": name, "size": size, "block": block, "count": 0, "first_step": step,
                       "min_step": step, "min_value": value, "max_step": step, "max_value": value}
            blocks.append(current)
        current["count"] += 1
        current["last_step"] = step
        if value < current["min_value"]:  # strictly: a tie keeps the earliest step
            current["min_step"], current["min_value"] = step, value
        if value > current["max_value"]:
            current["max_step"], current["max_value"] = step, value
    return blocks


def _runs(blocks: set[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive blocks."""
    runs: list[tuple[int, int]] = []
    for block in sorted(blocks):
        if runs and runs[-1][1] == block - 1:
            runs[-1] = (runs[-1][0], block)
        else:
            runs.append((block, block))
    return runs


# Every block of every series (or of one job's), from the points, in SQL: for a migration and for
# points written in bulk. Integer division on both backends; the ranks pick each extreme's earliest step.
REBUILD = """
INSERT INTO metric_blocks (job_id, name, size, block, count, first_step, last_step, min_step, min_value,
                           max_step, max_value)
SELECT job_id, name, {block}, block, count(*), min(step), max(step),
       min(CASE WHEN low = 1 THEN step END), min(CASE WHEN low = 1 THEN value END),
       min(CASE WHEN high = 1 THEN step END), min(CASE WHEN high = 1 THEN value END)
FROM (
    SELECT job_id, name, step, value, step / {block} AS block,
           row_number() OVER (PARTITION BY job_id, name, step / {block} ORDER BY value, step) AS low,
           row_number() OVER (PARTITION BY job_id, name, step / {block} ORDER BY value DESC, step) AS high
    FROM metric_points {where}
) AS ranked
GROUP BY job_id, name, block
"""


def rebuild_blocks(session: Session | Connection, job_id: int) -> None:
    """Every block of a job, from its points (after points were written in bulk around this module)."""
    session.execute(delete(MetricBlock).where(MetricBlock.job_id == job_id))
    for size in (BLOCK, SUB_BLOCK):
        session.execute(text(REBUILD.format(block=size, where="WHERE job_id = :job_id")), {"job_id": job_id})
