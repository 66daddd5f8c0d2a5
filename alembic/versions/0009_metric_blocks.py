"""per-block summaries of metric series, for charts of long series

A block is 64 (or 8) steps of one series: its point count, first and last step, and lowest and
highest value each at its earliest step (db/metric_blocks.py). Filled here from the existing points.

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# db/metric_blocks.py's REBUILD as of this revision, for blocks of 64 and of 8 steps.
FILL = """
INSERT INTO metric_blocks (job_id, name, size, block, count, first_step, last_step, min_step, min_value,
                           max_step, max_value)
SELECT job_id, name, {size}, block, count(*), min(step), max(step),
       min(CASE WHEN low = 1 THEN step END), min(CASE WHEN low = 1 THEN value END),
       min(CASE WHEN high = 1 THEN step END), min(CASE WHEN high = 1 THEN value END)
FROM (
    SELECT job_id, name, step, value, step / {size} AS block,
           row_number() OVER (PARTITION BY job_id, name, step / {size} ORDER BY value, step) AS low,
           row_number() OVER (PARTITION BY job_id, name, step / {size} ORDER BY value DESC, step) AS high
    FROM metric_points
) AS ranked
GROUP BY job_id, name, block
"""


def upgrade() -> None:
    op.create_table(
        'metric_blocks',
        sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('block', sa.Integer(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('first_step', sa.Integer(), nullable=False),
        sa.Column('last_step', sa.Integer(), nullable=False),
        sa.Column('min_step', sa.Integer(), nullable=False),
        sa.Column('min_value', sa.Float(), nullable=False),
        sa.Column('max_step', sa.Integer(), nullable=False),
        sa.Column('max_value', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_metric_blocks_job_id_jobs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'name', 'size', 'block', name=op.f('pk_metric_blocks')),
    )
    for size in (64, 8):
        op.execute(FILL.format(size=size))


def downgrade() -> None:
    op.drop_table('metric_blocks')
