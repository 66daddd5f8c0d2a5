"""The real training process with packing, length grouping and the tokenized-dataset cache."""

import random

from db.engine import session_scope
from db.jobs import get_job
from db.runs import get_run
from tests.worker.conftest import DEMO_ROWS, install_tiny_model, output_of, run_training, start_job, write_dataset
from traindock.settings import get_settings

# Lengths from a few tokens to past cutoff_len: padding wastes much of an unpacked batch.
RNG = random.Random(0)
SKEWED_ROWS = [{"text": " ".join(["word"] * int(4 * 40 ** RNG.random()))} for _ in range(80)]


def job(**data) -> dict:
    return {
        "data": {"cutoff_len": 128, "val_set_size": 8, **data},
        "training": {"max_steps": 4, "per_device_train_batch_size": 4, "optim": "adamw_torch",
                     "logging_steps": 2, "eval_strategy": "steps", "eval_steps": 4, "save_strategy": "no"},
    }


def train(backend, dataset_id: int, **data):
    started = start_job(dataset_id, **job(**data))
    process = run_training(backend, started.run_id)
    with session_scope() as session:
        return process, get_job(session, started.job_id), get_run(session, started.run_id)


def test_packing_and_grouping_cut_padding_and_report_it(sqlite_backend):
    install_tiny_model()
    dataset_id = write_dataset(SKEWED_ROWS, "text")
    results = {}
    for name, data in {"padded": {}, "grouped": {"group_by_length": True}, "packed": {"packing": True}}.items():
        process, finished, _ = train(sqlite_backend, dataset_id, **data)
        assert process.returncode == 0, output_of(process)
        assert finished.progress["real_tokens_per_second"] > 0
        assert finished.progress["padding_efficiency"] == finished.result["padding_efficiency"]
        assert finished.result["real_tokens_per_second"] > 0
        assert "eval_loss" in finished.result["metrics"]
        results[name] = finished.result["padding_efficiency"]

    assert results["padded"] < 0.7 and results["packed"] > 0.9
    assert results["padded"] < results["grouped"] < results["packed"]


def test_packing_with_prompt_masking_trains_on_chat_rows(sqlite_backend):
    install_tiny_model()
    rows = [{"messages": [{"role": "user", "content": row["instruction"]},
                          {"role": "assistant", "content": row["output"]}]} for row in DEMO_ROWS[:40]]
    process, finished, _ = train(sqlite_backend, write_dataset(rows, "chat"), packing=True, train_on_inputs=False)
    assert process.returncode == 0, output_of(process)
    assert finished.result["padding_efficiency"] > 0.9


def test_a_second_job_on_the_same_data_reads_the_cache_and_a_changed_file_is_refused(sqlite_backend):
    install_tiny_model()
    dataset_id = write_dataset(DEMO_ROWS, "alpaca")
    first, _, _ = train(sqlite_backend, dataset_id, packing=True)
    assert first.returncode == 0, output_of(first)
    assert "tokenized examples written to the cache" in first.stderr
    [entry] = (get_settings().root / "cache" / "tokenized").glob("*.npz")
    written = entry.stat().st_mtime_ns

    second, finished, _ = train(sqlite_backend, dataset_id, packing=True)
    assert second.returncode == 0, output_of(second)
    assert f"tokenized examples loaded from the cache: {entry}" in second.stderr
    assert entry.stat().st_mtime_ns == written

    other, _, _ = train(sqlite_backend, dataset_id, packing=False)  # other examples, other entry
    assert "written to the cache" in other.stderr
    assert len(list(entry.parent.glob("*.npz"))) == 2

    path = get_settings().datasets_dir / "data.jsonl"
    path.write_text(path.read_text().replace("a", "b", 1))
    changed, failed, run = train(sqlite_backend, dataset_id, packing=True)
    assert changed.returncode != 0
    assert run.error["code"] == "bad_dataset"
    assert "changed on disk since its upload" in run.error["message"]
    assert failed.result is None
