"""Checks of a spec that need the server: the dataset, the model folder, the output folder."""

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.datasets import get_dataset
from db.models import Dataset, Job
from jobspec import JobSpec, split_problems
from traindock.paths import PathRefused, check_output_name, resolve_base_model
from traindock.settings import Settings

DEFAULT_OUTPUT_NAME = re.compile(r"job-\d+")


def server_problems(session: Session, settings: Settings, spec: JobSpec) -> tuple[list[dict[str, Any]], Dataset | None]:
    """Problems as (loc, msg, type) dicts without the 'body' prefix, and the dataset if found."""
    problems: list[dict[str, Any]] = []
    try:
        resolve_base_model(spec.base_model, settings.effective_model_roots)
    except PathRefused as refused:
        problems.append({"loc": ("base_model",), "msg": f"base_model {refused}", "type": "path_refused"})
    if spec.output_dir is not None:
        try:
            check_output_name(spec.output_dir)
        except PathRefused as refused:
            problems.append({"loc": ("output_dir",), "msg": f"output_dir {refused}", "type": "path_refused"})
        else:
            owner = session.scalar(
                select(Job.id).where(Job.spec["output_dir"].as_string() == spec.output_dir).limit(1)
            )
            if DEFAULT_OUTPUT_NAME.fullmatch(spec.output_dir):
                problems.append({
                    "loc": ("output_dir",), "type": "output_dir_reserved",
                    "msg": "names of the form job-<number> are reserved for jobs without an output_dir",
                })
            elif owner is not None:
                # Sharing a folder would let one job's checkpoint rotation delete the other's.
                problems.append({
                    "loc": ("output_dir",), "type": "output_dir_in_use",
                    "msg": f"output_dir '{spec.output_dir}' belongs to job {owner}; choose another name",
                })
    dataset = get_dataset(session, spec.dataset_id)
    if dataset is None:
        problems.append({"loc": ("dataset_id",), "msg": f"no dataset with id {spec.dataset_id}", "type": "not_found"})
        return problems, None
    if spec.data.format not in ("auto", dataset.format):
        problems.append({
            "loc": ("data", "format"), "type": "format_mismatch",
            "msg": f"dataset {dataset.id} holds {dataset.format} rows, not {spec.data.format}",
        })
    problems += split_problems(spec, dataset.rows)
    return problems, dataset
