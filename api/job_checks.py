"""Checks of a spec that need the server: the tenant's dataset and earlier job, the model
folder, the output folder, what the server's settings allow, and whether the queue's live
workers can run it (api/worker_fit.py)."""

import re
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.errors import problem
from api.worker_fit import worker_fit
from db.checkpoints import usable_checkpoint
from db.datasets import get_dataset
from db.jobs import get_job
from db.models import Job, Tenant
from db.status import JobStatus
from jobspec import JobSpec, split_problems
from jobspec.dataset_rows import PREFERENCE_FORMATS
from traindock.paths import PathRefused, check_output_name, resolve_base_model
from traindock.settings import Settings

DEFAULT_OUTPUT_NAME = re.compile(r"job-\d+")


def server_problems(session: Session, settings: Settings, tenant_id: int, spec: JobSpec) -> list[dict[str, Any]]:
    """Problems as (loc, msg, type) dicts without the 'body' prefix."""
    problems: list[dict[str, Any]] = []
    try:
        resolve_base_model(spec.base_model, settings.effective_model_roots)
    except PathRefused as refused:
        problems.append(problem(("base_model",), f"base_model {refused}", "path_refused"))
    if spec.trust_remote_code and not settings.allow_trust_remote_code:
        problems.append(problem(("trust_remote_code",), "this server does not run a model's own code: "
                                 "trust_remote_code is off unless the operator allows it", "not_allowed"))
    if spec.training.push_to_hub and settings.hub_token is None:
        problems.append(problem(("training", "push_to_hub"), "this server has no Hub token configured, so it "
                                 "cannot push to the Hub; set push_to_hub to false", "no_hub_token"))
    problems += _hub_problems(session, settings, tenant_id, spec.training.hub_model_id)
    problems += _output_dir_problems(session, tenant_id, spec.output_dir)
    problems += _resume_from_problems(session, tenant_id, spec)
    problems += _init_from_problems(session, tenant_id, spec)
    problems += _validation_dataset_problems(session, tenant_id, spec)
    problems += worker_fit(session, settings, spec)[0]
    dataset = get_dataset(session, spec.dataset_id, tenant_id)
    if dataset is None:
        problems.append(problem(("dataset_id",), f"no dataset with id {spec.dataset_id}", "not_found"))
        return problems
    if spec.data.format not in ("auto", dataset.format):
        problems.append(problem(("data", "format"), f"dataset {dataset.id} holds {dataset.format} rows, "
                                 f"not {spec.data.format}", "format_mismatch"))
    problems += objective_problems(("dataset_id",), spec, dataset.id, dataset.format)
    return problems + split_problems(spec, dataset.rows)


def objective_problems(loc: tuple, spec: JobSpec, dataset_id: int, fmt: str) -> list[dict[str, Any]]:
    """Preference rows train only a preference objective, and supervised rows only 'sft'."""
    preference_rows = fmt in PREFERENCE_FORMATS
    if preference_rows == (spec.objective != "sft"):
        return []
    if preference_rows:
        msg = (f"dataset {dataset_id} holds preference rows (detected format '{fmt}'), which objective 'sft' cannot "
               "train on: set objective to 'dpo' or 'orpo', or use a dataset of supervised rows")
    else:
        msg = (f"objective '{spec.objective}' trains on preference pairs, but dataset {dataset_id} holds {fmt} rows "
               "(detected format): upload preference rows (prompt, chosen, rejected; or OpenAI's input, "
               "preferred_output, non_preferred_output), or set objective to 'sft'")
    return [problem(loc, msg, "dataset_objective_mismatch")]


def _hub_problems(session: Session, settings: Settings, tenant_id: int, repo: str | None) -> list[dict[str, Any]]:
    """A tenant pushes only under its own Hub namespace: the server's token could write anywhere."""
    if repo is None:
        return []
    namespace = settings.hub_namespace(session.get(Tenant, tenant_id).name)
    if namespace is None:
        return [problem(("training", "hub_model_id"), "this server has no Hub namespace for your tenant; "
                         "leave hub_model_id out", "hub_namespace_refused")]
    if not repo.startswith(namespace + "/") or ".." in repo:
        return [problem(("training", "hub_model_id"), f"hub_model_id must be a repository under '{namespace}/', "
                         f"e.g. '{namespace}/my-model'", "hub_namespace_refused")]
    return []


def _output_dir_problems(session: Session, tenant_id: int, name: str | None) -> list[dict[str, Any]]:
    if name is None:
        return []
    try:
        check_output_name(name)
    except PathRefused as refused:
        return [problem(("output_dir",), f"output_dir {refused}", "path_refused")]
    parts = name.split("/")
    if DEFAULT_OUTPUT_NAME.fullmatch(parts[0]):
        return [problem(("output_dir",), "names of the form job-<number> are reserved for jobs without "
                         "an output_dir", "output_dir_reserved")]
    # The same folder, one inside it or one it is inside: sharing would let one job's checkpoint
    # rotation delete the other's, or one job write into the other's checkpoints.
    taken = Job.spec["output_dir"].as_string()
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    owner = session.execute(select(Job.id, taken).where(
        Job.tenant_id == tenant_id, or_(taken.in_(prefixes), taken.startswith(name + "/", autoescape=True)),
    ).limit(1)).first()
    if owner is not None:
        job_id, theirs = owner
        where = "" if theirs == name else f" (it overlaps '{theirs}')"
        return [problem(("output_dir",), f"output_dir '{name}' belongs to job {job_id}{where}; choose another name",
                         "output_dir_in_use")]
    return []


def _resume_from_problems(session: Session, tenant_id: int, spec: JobSpec) -> list[dict[str, Any]]:
    """The earlier job must be the tenant's own, with a usable checkpoint of the same model."""
    earlier = spec.resume_from_checkpoint
    if earlier is None:
        return []
    job = get_job(session, earlier.job_id, tenant_id)
    if job is None:
        return [problem(("resume_from_checkpoint", "job_id"), f"no job with id {earlier.job_id}", "not_found")]
    if usable_checkpoint(session, job.id, earlier.step) is None:
        at = f"at step {earlier.step}" if earlier.step else "at all"
        return [problem(("resume_from_checkpoint", "step"), f"job {job.id} has no usable checkpoint {at}",
                         "no_checkpoint")]
    before = JobSpec.model_validate(job.spec)
    if (before.base_model, before.method, before.lora) != (spec.base_model, spec.method, spec.lora):
        return [problem(("resume_from_checkpoint", "job_id"), f"job {job.id} trained another model: its "
                         "base_model, method and lora settings must be the same as this job's", "model_mismatch")]
    return []


def _validation_dataset_problems(session: Session, tenant_id: int, spec: JobSpec) -> list[dict[str, Any]]:
    if spec.validation_dataset_id is None:
        return []
    dataset = get_dataset(session, spec.validation_dataset_id, tenant_id)
    if dataset is None:
        return [problem(("validation_dataset_id",), f"no dataset with id {spec.validation_dataset_id}", "not_found")]
    if spec.data.format not in ("auto", dataset.format):
        return [problem(("validation_dataset_id",), f"dataset {dataset.id} holds {dataset.format} rows, "
                         f"not {spec.data.format}", "format_mismatch")]
    return objective_problems(("validation_dataset_id",), spec, dataset.id, dataset.format)


def _init_from_problems(session: Session, tenant_id: int, spec: JobSpec) -> list[dict[str, Any]]:
    """The earlier job must be the tenant's own, succeeded, with the same model, method and LoRA
    settings (a LoRA adapter keeps its shape)."""
    if spec.init_from_job_id is None:
        return []
    loc = ("init_from_job_id",)
    job = get_job(session, spec.init_from_job_id, tenant_id)
    if job is None:
        return [problem(loc, f"no job with id {spec.init_from_job_id}", "not_found")]
    if job.status != JobStatus.SUCCEEDED or not (job.result or {}).get("final_model_path"):
        return [problem(loc, f"job {job.id} is {job.status}; only a succeeded job has a final model to start from",
                         "no_final_model")]
    before = JobSpec.model_validate(job.spec)
    if (before.base_model, before.method, before.lora) != (spec.base_model, spec.method, spec.lora):
        return [problem(loc, f"job {job.id} trained another model: base_model, method and lora settings must "
                         "be the same as this job's", "model_mismatch")]
    if spec.resume_from_checkpoint is not None:
        return [problem(loc, "init_from_job_id and resume_from_checkpoint both say where to start; give one",
                         "two_starting_points")]
    return []
