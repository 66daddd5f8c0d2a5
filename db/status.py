"""Job and run states. A job's status follows its latest run; every change is an event."""

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_JOB_STATES = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
# A job may be resumed from these (and from succeeded when the overrides extend training).
# `interrupted` is never one a job rests in: in the same transaction it moves on to queued (an
# automatic restart) or failed.
RESUMABLE_JOB_STATES = {JobStatus.CANCELLED, JobStatus.FAILED}
ACTIVE_JOB_STATES = {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING}
