"""The job-spec contract shared by the API and the worker. Imports only pydantic (and the stdlib)."""

from jobspec.advice import tuning_warnings
from jobspec.estimate import estimate, split_problems, split_sizes
from jobspec.memory import memory_estimate
from jobspec.model import (
    DataSpec,
    EvaluationSpec,
    JobSpec,
    LoraSpec,
    ResourcesSpec,
    ResumeFrom,
    TrainingSpec,
)
from jobspec.resume import RESUME_OVERRIDABLE_FIELDS, ResumeOverrideError, apply_resume_overrides
from jobspec.rules import spec_problems
from jobspec.schema import job_spec_json_schema
from jobspec.suggest import explain_unknown_fields
from jobspec.training_args import training_arguments

__all__ = [
    "RESUME_OVERRIDABLE_FIELDS",
    "DataSpec",
    "EvaluationSpec",
    "JobSpec",
    "LoraSpec",
    "ResourcesSpec",
    "ResumeFrom",
    "ResumeOverrideError",
    "TrainingSpec",
    "apply_resume_overrides",
    "estimate",
    "explain_unknown_fields",
    "job_spec_json_schema",
    "memory_estimate",
    "spec_problems",
    "split_problems",
    "split_sizes",
    "training_arguments",
    "tuning_warnings",
]
