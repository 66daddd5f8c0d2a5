"""The job-spec contract shared by the API and the worker. Imports only pydantic (and the stdlib)."""

from jobspec.model import (
    DataSpec,
    JobSpec,
    LoraSpec,
    ResourcesSpec,
    ResumeFrom,
    TrainingSpec,
)

__all__ = ["DataSpec", "JobSpec", "LoraSpec", "ResourcesSpec", "ResumeFrom", "TrainingSpec"]
