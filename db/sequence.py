"""Per-job stream numbers: every event, metric batch and progress of a job gets the next one.

Taking the number updates the job's row, so it holds the row lock until the writer commits: a
higher number is never visible before a lower one of the same job. A reader that first reads
`jobs.stream_seq` and then the rows numbered up to it sees all of them, which is what lets the
stream replay and follow without gaps or duplicates (api/stream_follower.py)."""

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import Job


def next_seq(session: Session, job_id: int, **job_values) -> int:
    """The job's next stream number; `job_values` are set on the job row in the same statement."""
    statement = (
        update(Job).where(Job.id == job_id)
        .values({"stream_seq": Job.stream_seq + 1, "updated_at": Job.updated_at, **job_values})
        .returning(Job.stream_seq)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).scalar_one()
