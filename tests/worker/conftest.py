"""The real training process (`python -m worker.train`) on the tiny model, against a real database:
a dataset row, a job and its run claimed as the supervisor would claim it."""

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from db.datasets import add_dataset
from db.engine import session_scope
from db.tenants import get_or_create_tenant
from db.lifecycle import claim_run, create_job
from jobspec.model import JobSpec
from tests.conftest import Backend
from traindock.settings import get_settings

REPO = Path(__file__).resolve().parents[2]
DEMO_ROWS = [json.loads(line) for line in (REPO / "traindock/data/alpaca_demo.jsonl").read_text().splitlines()]
TRAINING_TIMEOUT_S = 120


@dataclass
class Started:
    job_id: int
    run_id: int


def write_dataset(rows: list[dict], fmt: str, name: str = "data.jsonl") -> int:
    path = get_settings().datasets_dir / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with session_scope() as session:
        dataset = add_dataset(
            session, tenant_id=get_or_create_tenant(session, "worker-tests").id, filename=name, path=str(path), format=fmt, rows=len(rows),
            bytes=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        return dataset.id


def start_job(dataset_id: int, *, base_model: str = "tiny", **fields) -> Started:
    """A job claimed by a (pretend) worker: its run is 'running', as the supervisor leaves it."""
    spec = JobSpec.model_validate({"base_model": base_model, "dataset_id": dataset_id, **fields})
    with session_scope() as session:
        job = create_job(
            session, tenant_id=get_or_create_tenant(session, "worker-tests").id, spec=spec.model_dump(mode="json"),
            dataset_id=dataset_id, queue="gpu", name=None,
        )
        started = Started(job.id, job.runs[0].id)
    with session_scope() as session:
        assert claim_run(session, started.run_id, "test-worker") is not None
    return started


def training_command(run_id: int) -> list[str]:
    return [sys.executable, "-m", "worker.train", "--run-id", str(run_id)]


def process_env(backend: Backend) -> dict[str, str]:
    return os.environ | backend.env


def run_training(backend: Backend, run_id: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        training_command(run_id), env=process_env(backend), cwd=REPO,
        capture_output=True, text=True, timeout=TRAINING_TIMEOUT_S,
    )


def output_of(process: subprocess.CompletedProcess) -> str:
    return f"exit {process.returncode}\n--- stdout\n{process.stdout[-4000:]}\n--- stderr\n{process.stderr[-6000:]}"


def install_tiny_model(name: str = "tiny") -> Path:
    """The tiny model in the current backend's model root (built in well under a second)."""
    from worker.tinymodel import build_tiny_model

    return build_tiny_model(get_settings().effective_model_roots[0] / name)
