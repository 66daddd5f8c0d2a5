"""Failures of the real training process: exit EXIT_FAILED with the run's error classified."""

import json
import math
import resource
from pathlib import Path

import pytest
import torch

from db.engine import session_scope
from db.jobs import get_job
from db.runs import get_run
from tests.worker.conftest import (
    DEMO_ROWS, install_tiny_model, output_of, run_training, start_job, write_dataset,
)
from traindock.settings import get_settings
from worker.errors import EXIT_FAILED

SHORT_JOB = {"training": {"max_steps": 2, "per_device_train_batch_size": 2, "save_strategy": "no"}}
# A square float32 attention matrix per head: the one allocation the OOM test makes fail.
OOM_HEADS = 64


def failure(backend, started) -> dict:
    process = run_training(backend, started.run_id)
    assert process.returncode == EXIT_FAILED, output_of(process)
    assert "Traceback" in process.stderr
    with session_scope() as session:
        assert get_job(session, started.job_id).result is None
        return get_run(session, started.run_id).error


def test_a_folder_that_is_not_a_model_is_bad_model(sqlite_backend):
    folder = get_settings().effective_model_roots[0] / "not-a-model"
    folder.mkdir()
    (folder / "weights.txt").write_text("nothing here")
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), base_model="not-a-model", **SHORT_JOB)

    error = failure(sqlite_backend, started)

    assert error["code"] == "bad_model"
    assert "config.json" in error["message"]


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_a_dataset_file_deleted_or_corrupted_after_upload_is_bad_dataset(sqlite_backend, damage):
    install_tiny_model()
    dataset_id = write_dataset(DEMO_ROWS, "alpaca")
    started = start_job(dataset_id, **SHORT_JOB)
    path = get_settings().datasets_dir / "data.jsonl"
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b'{"instruction": "cut off in the mid\x00\xff\n')

    error = failure(sqlite_backend, started)

    assert error["code"] == "bad_dataset"
    assert ("missing" if damage == "deleted" else "changed on disk since its upload") in error["message"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU may support bf16")
def test_bf16_without_a_gpu_that_supports_it_is_bf16_unsupported(sqlite_backend):
    install_tiny_model()
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"),
                        training={**SHORT_JOB["training"], "bf16": True})

    error = failure(sqlite_backend, started)

    assert error["code"] == "bf16_unsupported"
    assert "fp16" in error["advice"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_qlora_without_a_cuda_gpu_is_qlora_unavailable(sqlite_backend):
    install_tiny_model()
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), method="qlora",
                        training={**SHORT_JOB["training"], "fp16": True})

    error = failure(sqlite_backend, started)

    assert error["code"] == "qlora_unavailable"
    assert "CUDA GPU" in error["message"] and "traindock[gpu]" in error["advice"]


def memory_bytes() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return sum(int(fields[name].split()[0]) * 1024 for name in ("MemTotal", "SwapTotal"))


def test_an_attention_matrix_larger_than_the_machine_is_out_of_memory(sqlite_backend):
    """Real, and safe: with eager attention and 64 heads, one example of `tokens` tokens needs a
    64 x tokens^2 float32 matrix of twice the machine's RAM + swap. Linux refuses an allocation
    larger than RAM + swap at once (overcommit modes 0 and 2), so it fails fast, having touched
    only the ~5 x tokens^2 bytes of the causal mask."""
    if Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1":
        pytest.skip("memory overcommit is unconditional: the allocation would succeed and swap")
    tokens = math.ceil(math.sqrt(2 * memory_bytes() / (OOM_HEADS * 4)))
    if tokens > 100_000:
        pytest.skip("this machine has too much memory for a cutoff_len the spec allows")
    folder = install_tiny_model()
    config = json.loads((folder / "config.json").read_text())
    # Same weight shapes (heads x head_dim stays 64), far more attention matrices.
    config.update(attn_implementation="eager", num_attention_heads=OOM_HEADS,
                  num_key_value_heads=OOM_HEADS, head_dim=1)
    (folder / "config.json").write_text(json.dumps(config))
    started = start_job(write_dataset([{"text": "apple " * tokens}], "text"),
                        data={"cutoff_len": tokens}, **SHORT_JOB)

    error = failure(sqlite_backend, started)

    assert error["code"] == "out_of_memory"
    assert "per_device_train_batch_size" in error["message"] and "gradient_accumulation_steps" in error["message"]
    assert "cutoff_len" in error["advice"]
    peak_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak_bytes < 8 * tokens**2 + 2 * 1024**3


@pytest.mark.parametrize("raised", [RuntimeError("CUDA out of memory"), "stopped"])
def test_the_checkpoint_upload_under_way_is_finished_when_training_fails_or_stops(
        sqlite_backend, tmp_path, monkeypatch, raised):
    """Its thread dies with the process: the newest checkpoint would never be recorded."""
    import threading
    from types import SimpleNamespace

    import worker.train as train
    from jobspec.model import JobSpec
    from worker.callback import ReportingCallback
    from worker.checkpoint_upload import CheckpointUploads
    from worker.errors import TrainingStopped

    raised = TrainingStopped("stopped on request at step 3") if raised == "stopped" else raised
    waited = []

    class Trainer:
        state = SimpleNamespace(global_step=3)

        def train(self, resume_from_checkpoint=None):
            raise raised

    monkeypatch.setattr(CheckpointUploads, "wait_quietly", lambda self: waited.append(True))
    monkeypatch.setattr(ReportingCallback, "flush_quietly", lambda self: None)
    monkeypatch.setattr(train, "build_trainer", lambda *args: Trainer())
    spec = JobSpec.model_validate({"base_model": "tiny", "dataset_id": 1, **SHORT_JOB})
    context = train.RunContext(run_id=1, job_id=1, attempt=1, spec=spec, dataset_path=tmp_path / "d.jsonl",
                               dataset_sha256="0" * 64, dataset_format="alpaca", output_dir=tmp_path / "out",
                               resume_step=None, resume_from=None)
    with pytest.raises(type(raised)):
        train.run_training(context, threading.Event())
    assert waited == [True]
