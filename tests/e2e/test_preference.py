"""DPO through the unchanged `openai` client: an OpenAI-format preference file, `method` dpo, its
reward metrics in the job's events, and a model that then answers with the chosen sentence through
the inference server (tests/e2e/test_inference.py's stack)."""

import time

import pytest

from tests.e2e.test_inference import FINISHED, openai_client  # noqa: F401 (the fixture)
from tests.integration.conftest import jsonl
from tests.worker.test_preference import CHOSEN, REJECTED

pytestmark = pytest.mark.e2e
ROWS = [{"input": {"messages": [{"role": "user", "content": f"Tell me fact number {i}."}]},
         "preferred_output": [{"role": "assistant", "content": CHOSEN}],
         "non_preferred_output": [{"role": "assistant", "content": REJECTED}]} for i in range(16)]


# The preference path does not depend on the backend: PostgreSQL only.
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_dpo_job_from_an_openai_preference_file_answers_with_the_chosen_sentence(openai_client):  # noqa: F811
    client = openai_client
    file = client.files.create(file=("pairs.jsonl", jsonl(ROWS)), purpose="fine-tune")
    assert client.files.retrieve(file.id).filename == "pairs.jsonl"
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=file.id, seed=42,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "batch_size": 4,
                                                           "learning_rate_multiplier": 25}}},
        extra_body={"data": {"cutoff_len": 64}, "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
                    "training": {"max_steps": 24, "optim": "adamw_torch", "lr_scheduler_type": "constant",
                                 "save_strategy": "no"}},
    )
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.1
    deadline = time.monotonic() + 300
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in FINISHED:
        assert time.monotonic() < deadline, f"{job.id} still {job.status}"
        time.sleep(0.2)
    assert job.status == "succeeded", job

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    metrics = sorted((e.data for e in events if e.type == "metrics" and "rewards/margins" in e.data),
                     key=lambda data: data["step"])
    assert [m["step"] for m in metrics] == list(range(1, 25))
    assert min(m["rewards/accuracies"] for m in metrics[-4:]) >= 0.99
    assert metrics[0]["rewards/margins"] < metrics[11]["rewards/margins"] < metrics[-1]["rewards/margins"]
    assert {"rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"} <= set(metrics[-1])
    assert "num_tokens" not in metrics[-1]  # TRL's per-attempt count (worker/preference.py)

    answer = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "Tell me fact number 3."}],
        max_tokens=8, temperature=0).choices[0].message.content
    assert answer.startswith("The sky"), answer
