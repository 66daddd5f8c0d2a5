"""Preference training in the real training process on the tiny model: ORPO, DPO on a full
fine-tune (a frozen copy, or precomputed log-probs, as the reference), and DPO from a supervised
job's adapter. (A DPO job that learns to answer with the chosen sentence: tests/e2e/test_preference.py.)"""

import importlib.util
from pathlib import Path

import pytest

from db.engine import session_scope
from db.jobs import get_job
from db.metrics import list_metrics
from jobspec.choices import DPO_LOSS_TYPES
from tests.worker.conftest import (
    DEMO_ROWS, install_tiny_model, output_of, run_training, start_job, write_dataset,
)

CHOSEN = "The sky is blue today."
REJECTED = "Bananas are very loud."
# TRL's conversational rows; OpenAI's DPO rows go through the same path in tests/e2e/test_preference.py.
PAIRS = [{"prompt": [{"role": "user", "content": f"Tell me fact number {i}."}],
          "chosen": [{"role": "assistant", "content": CHOSEN}],
          "rejected": [{"role": "assistant", "content": REJECTED}]} for i in range(16)]


def test_dpo_loss_types_are_trls():
    # Read, not imported: importing TRL takes seconds.
    source = Path(importlib.util.find_spec("trl.trainer.dpo_trainer").origin).read_text()
    assert [name for name in DPO_LOSS_TYPES if f'loss_type == "{name}"' not in source] == []


def series(job_id: int, name: str) -> list[float]:
    with session_scope() as session:
        return [point.value for point in list_metrics(session, job_id, names=[name])]


SHORT = {"data": {"cutoff_len": 64}, "training": {"max_steps": 3, "per_device_train_batch_size": 4,
                                                "optim": "adamw_torch", "logging_steps": 1, "save_steps": 2}}


def run_ok(backend, dataset_id: int, **fields) -> int:
    started = start_job(dataset_id, **{**SHORT, **fields})
    process = run_training(backend, started.run_id)
    assert process.returncode == 0, output_of(process)
    return started.job_id


@pytest.mark.parametrize("fields, metric", [
    ({"objective": "orpo"}, "log_odds_ratio"),
    ({"objective": "dpo", "method": "full"}, "rewards/margins"),  # a frozen copy is the reference
    ({"objective": "dpo", "method": "full", "preference": {"reference": "precomputed", "max_prompt_length": 4}},
     "rewards/margins"),
], ids=["orpo", "dpo-full", "dpo-full-precomputed"])
def test_preference_variants_train(sqlite_backend, fields, metric):
    install_tiny_model()
    job_id = run_ok(sqlite_backend, write_dataset(PAIRS, "preference"), **fields)
    assert len(series(job_id, metric)) == len(series(job_id, "rewards/accuracies")) == 3


def test_dpo_starts_from_a_supervised_job(sqlite_backend):
    """The usual pipeline: SFT, then DPO from its adapter (TRL keeps a frozen copy as the reference)."""
    install_tiny_model()
    sft = run_ok(sqlite_backend, write_dataset(DEMO_ROWS[:16], "alpaca"), lora={"r": 8})
    dpo = run_ok(sqlite_backend, write_dataset(PAIRS, "preference", name="pairs.jsonl"), objective="dpo",
                 init_from_job_id=sft, lora={"r": 8})
    assert series(dpo, "rewards/margins")[0] == 0  # the policy starts equal to its reference
    with session_scope() as session:
        final = Path(get_job(session, dpo).result["final_model_path"])
    assert (final / "adapter_model.safetensors").is_file()
    assert (final / "ref" / "adapter_model.safetensors").is_file()  # the reference, beside it


def test_a_preference_dataset_changed_after_upload_is_bad_dataset(sqlite_backend):
    """Checked against its sha256 before use, as a supervised job's is (rows still valid: without
    the check it would train on them)."""
    from db.runs import get_run
    from traindock.settings import get_settings
    from worker.errors import EXIT_FAILED

    install_tiny_model()
    started = start_job(write_dataset(PAIRS, "preference"), objective="dpo", **SHORT)
    path = get_settings().datasets_dir / "data.jsonl"
    path.write_text(path.read_text().replace("blue", "grey"))
    process = run_training(sqlite_backend, started.run_id)
    assert process.returncode == EXIT_FAILED, output_of(process)
    with session_scope() as session:
        error = get_run(session, started.run_id).error
    assert error["code"] == "bad_dataset" and "changed on disk since its upload" in error["message"]
