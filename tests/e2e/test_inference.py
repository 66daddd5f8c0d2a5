"""Calling trained models with the unchanged `openai` client: a full fine-tune on rows whose every
answer is one sentence says that sentence where the base model does not; a LoRA job and a
checkpoint answer too; streaming gives the non-streamed text; another tenant's model is 404; bad
parameters are 400. A real worker trains, a real inference server (`traindock serve`) generates."""

import json
import os
import subprocess
import sys
import time

import openai
import pytest
from openai import OpenAI

from tests.conftest import reset_caches
from tests.e2e.conftest import start_inference_server, start_worker, stop_process, stop_worker
from tests.integration.conftest import issue, jsonl
from tests.integration.openai_server import serve

pytestmark = pytest.mark.e2e
FINISHED = {"succeeded", "failed", "cancelled"}
SENTENCE = "The answer is always forty two."
QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Name a colour.", "Tell me a joke.",
             "What time is it?", "Why is the sky blue?", "Count to three.", "Who wrote Hamlet?",
             "What is two plus two?", "Describe a cat.", "Where is the moon?", "How tall is a tree?"]
ROWS = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": SENTENCE}]} for q in QUESTIONS]
ASK = [{"role": "user", "content": "What should I cook tonight?"}]


@pytest.fixture
def openai_client(backend, models_root, monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINDOCK_MODEL_ROOTS", json.dumps([str(models_root)]))
    reset_caches()
    from api.app import create_app

    worker = start_worker(tmp_path / "worker.log")
    server = start_inference_server(tmp_path / "serve.log", "--host", "0.0.0.0")  # as in docker-compose
    try:
        with serve(create_app()) as url:
            key = issue("e2e")
            client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            client.cli_env = {**os.environ, "TRAINDOCK_API_URL": url, "TRAINDOCK_API_KEY": key}
            client.server_log = server.log_path
            yield client
    finally:
        stop_process(server)
        stop_worker(worker)


def train(client: OpenAI, file_id: str, extra: dict, timeout: float = 300):
    job = client.fine_tuning.jobs.create(model="tiny", training_file=file_id, seed=1, extra_body=extra)
    deadline = time.monotonic() + timeout
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in FINISHED:
        assert time.monotonic() < deadline, f"{job.id} still {job.status}"
        time.sleep(0.2)
    assert job.status == "succeeded", job
    return job


def chat(client: OpenAI, model: str, **kwargs) -> str:
    answer = client.chat.completions.create(model=model, messages=ASK, max_tokens=24, temperature=0, **kwargs)
    assert answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 24
    return answer.choices[0].message.content


def test_fine_tuned_models_and_checkpoints_answer_through_the_openai_client(openai_client):
    client = openai_client
    train_file = client.files.create(file=("train.jsonl", jsonl(ROWS)), purpose="fine-tune")
    full = train(client, train_file.id, {
        "method": "full", "data": {"cutoff_len": 64},
        "training": {"num_train_epochs": 30, "per_device_train_batch_size": 4, "learning_rate": 3e-3,
                     "optim": "adamw_torch", "save_strategy": "steps", "save_steps": 60, "logging_steps": 10},
    })

    # The fine-tuned model learned the sentence; the base model, with the same prompt, did not.
    tuned = chat(client, full.fine_tuned_model)
    assert SENTENCE in tuned
    assert SENTENCE not in chat(client, "tiny")
    assert chat(client, full.fine_tuned_model) == tuned  # temperature 0 is greedy: the same text again

    # Streamed: the same text, in OpenAI's chunks, with the usage at the end when asked for.
    stream = client.chat.completions.create(model=full.fine_tuned_model, messages=ASK, max_tokens=24, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == tuned
    assert chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (["stop"], ["length"])

    # A stop sequence cuts the answer before it; /v1/completions prompts as training did too.
    assert chat(client, full.fine_tuned_model, stop=["forty"]) == tuned.split("forty")[0]
    completion = client.completions.create(model=full.fine_tuned_model, prompt="What should I cook tonight?",
                                           max_tokens=24, temperature=0)
    assert completion.choices[0].text == tuned

    # A checkpoint of the job is a model too.
    [checkpoint, *_] = client.fine_tuning.jobs.checkpoints.list(full.id)
    assert chat(client, checkpoint.fine_tuned_model_checkpoint)

    # A LoRA job's adapter is switched in on the loaded base; the base answers as before after it.
    lora = train(client, train_file.id, {
        "data": {"cutoff_len": 64}, "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "training": {"num_train_epochs": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2,
                     "optim": "adamw_torch", "save_strategy": "no"},
    })
    base_before = chat(client, "tiny")
    adapted = chat(client, lora.fine_tuned_model)
    assert adapted == chat(client, lora.fine_tuned_model)
    assert chat(client, "tiny") == base_before

    # Another tenant's models do not exist for this one.
    other = OpenAI(base_url=str(client.base_url), api_key=issue("someone-else"), max_retries=0)
    for model in (full.fine_tuned_model, checkpoint.fine_tuned_model_checkpoint, lora.fine_tuned_model):
        with pytest.raises(openai.NotFoundError):
            chat(other, model)
    with pytest.raises(openai.NotFoundError):
        chat(client, "no-such-model")

    # Bad parameters: a 400 naming the parameter.
    for kwargs, param in (({"temperature": 5}, "temperature"), ({"max_tokens": 10**6}, "max_tokens"),
                          ({"n": 2}, "n"), ({"max_tokens": 2040}, "max_tokens")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=full.fine_tuned_model, messages=ASK,
                                           **{"max_tokens": 8, **kwargs})
        assert refused.value.body["param"] == param, refused.value.body

    # The CLI: one prompt, and a chat on standard input, streamed; a missing model is one line.
    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "traindock.cli", *args], input=stdin, capture_output=True,
                              text=True, env=client.cli_env, timeout=120)

    generated = cli("generate", full.fine_tuned_model, "--prompt", "What should I cook tonight?", "--max-tokens", "24")
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout == tuned + "\n"
    chatted = cli("chat", full.fine_tuned_model, "--temperature", "0", "--max-tokens", "24",
                  stdin="What should I cook tonight?\n\n")
    assert chatted.returncode == 0, chatted.stderr
    assert f"model> {tuned}\n" in chatted.stdout
    missing = cli("generate", "no-such-model", "--prompt", "hi")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error 404: The model 'no-such-model' does not exist (model)"

    # The server listens on every address with no TRAINDOCK_INFERENCE_TOKEN: it said so as it started.
    assert "warning: listening on 0.0.0.0 without TRAINDOCK_INFERENCE_TOKEN" in client.server_log.read_text()
