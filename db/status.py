"""Job and run states. Which changes between them are legal is db/lifecycle.py's to say."""

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    PAUSING = "pausing"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A sweep's trial that its early-stopping rule (ASHA) stopped at a rung: checkpoints and stops
    # like a cancel, and ends early_stopped.
    EARLY_STOPPING = "early_stopping"
    EARLY_STOPPED = "early_stopped"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    EARLY_STOPPED = "early_stopped"


FINISHED_JOB_STATES = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EARLY_STOPPED}
# A job may be resumed from these (and from succeeded when the overrides extend training).
# `interrupted` is never one a job rests in: in the same transaction it moves on to queued (an
# automatic restart) or failed.
RESUMABLE_JOB_STATES = {JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.PAUSED}
# A job in these has a run that is queued or training (its dataset cannot be deleted).
ACTIVE_JOB_STATES = {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING, JobStatus.PAUSING,
                     JobStatus.EARLY_STOPPING}
# Nothing happens to a job in these until someone acts: a stream of the job ends there.
RESTING_JOB_STATES = FINISHED_JOB_STATES | {JobStatus.PAUSED}
# A running job being asked to checkpoint and stop.
STOPPING_JOB_STATES = {JobStatus.CANCELLING, JobStatus.PAUSING, JobStatus.EARLY_STOPPING}
