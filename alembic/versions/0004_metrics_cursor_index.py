"""metric points ordered by (step, name) within a job

The metrics cursor is the row comparison (step, name) > (s, n): with this index it is the scan's
start, so a page costs the same at any depth. It also serves everything the (job_id, step) index
did, which it replaces.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('metric_points', schema=None) as batch_op:
        batch_op.create_index('ix_metric_points_job_step_name', ['job_id', 'step', 'name'], unique=False)
        batch_op.drop_index('ix_metric_points_job_step')


def downgrade() -> None:
    with op.batch_alter_table('metric_points', schema=None) as batch_op:
        batch_op.create_index('ix_metric_points_job_step', ['job_id', 'step'], unique=False)
        batch_op.drop_index('ix_metric_points_job_step_name')
