"""stream sequence: per-job `seq` on events and metric points, heads on jobs

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stream_seq', SEQ, server_default='0', nullable=False))
        batch_op.add_column(sa.Column('progress_seq', SEQ, server_default='0', nullable=False))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', SEQ, server_default='0', nullable=False))
        batch_op.create_index('ix_events_job_seq', ['job_id', 'seq'], unique=False)
    with op.batch_alter_table('metric_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', SEQ, server_default='0', nullable=False))
        batch_op.create_index('ix_metric_points_job_seq', ['job_id', 'seq'], unique=False)
    # Existing rows: events numbered in id order, then all metric points as one batch, then progress.
    op.execute("UPDATE events SET seq = numbered.n FROM (SELECT id, row_number() OVER "
               "(PARTITION BY job_id ORDER BY id) AS n FROM events) AS numbered WHERE events.id = numbered.id")
    op.execute("UPDATE metric_points SET seq = 1 + (SELECT count(*) FROM events WHERE events.job_id = metric_points.job_id)")
    op.execute("UPDATE jobs SET stream_seq = 2 + (SELECT count(*) FROM events WHERE events.job_id = jobs.id)")
    op.execute("UPDATE jobs SET progress_seq = stream_seq WHERE progress IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('metric_points', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_points_job_seq')
        batch_op.drop_column('seq')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_job_seq')
        batch_op.drop_column('seq')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('progress_seq')
        batch_op.drop_column('stream_seq')
