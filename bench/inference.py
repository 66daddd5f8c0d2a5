"""Inference through the service against `generate` in one process, on the same loaded model:
first-text latency (the streamer sends text a word at a time) and tokens/s (the answer's tokens
over the request's whole time) through the API (the real `openai` client streaming from
/v1/chat/completions, a real inference server) against transformers' generate with a streamer;
the time a LoRA adapter switch costs; and a training job's tokens/s alone and with requests
streaming beside it on the same machine.

    python bench/inference.py [--rounds 5] [--tokens 128] [--model tiny|small]

Goals: tokens/s service/direct >= 0.9; first token through the API < 250 ms (tiny model, loaded).
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from embedded import embedded_service  # noqa: E402
from startup import run_job  # noqa: E402

MESSAGES = [{"role": "user", "content": "Write a long story about a robot who learns to paint."}]


def direct(folder: Path, tokens: int, rounds: int) -> tuple[float, float, int]:
    """(first text s, tokens/s, tokens) of generate with a streamer, as the inference server calls it.
    Tokens/s: the answer's tokens over the whole request's time."""
    import torch
    from transformers import AutoModelForCausalLM, TextIteratorStreamer

    from traindock.settings import get_settings
    from worker.model import load_tokenizer
    from worker.prompts import prompt_ids

    torch.set_num_threads(get_settings().inference_threads)  # the server's budget
    tokenizer = load_tokenizer(str(folder), "bench-model")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto").eval()
    ids = torch.tensor([prompt_ids(tokenizer, None, MESSAGES)])
    firsts, rates, count = [], [], 0
    for _ in range(rounds + 1):
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        started = time.perf_counter()
        result = {}

        def run():
            with torch.inference_mode():
                result["out"] = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                               max_new_tokens=tokens, streamer=streamer,
                                               pad_token_id=tokenizer.pad_token_id)

        thread = threading.Thread(target=run)
        thread.start()
        first = None
        for piece in streamer:
            if piece and first is None:
                first = time.perf_counter() - started
        thread.join()
        elapsed = time.perf_counter() - started
        count = result["out"].shape[1] - ids.shape[1]
        firsts.append(first)
        rates.append(count / elapsed)
    return statistics.median(firsts[1:]), statistics.median(rates[1:]), count


def through_api(client, model: str, tokens: int, rounds: int) -> tuple[float, float, int]:
    firsts, rates, count = [], [], 0
    for _ in range(rounds + 1):
        started = time.perf_counter()
        first = None
        stream = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=tokens, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - started
            if chunk.usage:
                count = chunk.usage.completion_tokens
        elapsed = time.perf_counter() - started
        firsts.append(first)
        rates.append(count / elapsed)
    return statistics.median(firsts[1:]), statistics.median(rates[1:]), count


def one_token_s(client, model: str) -> float:
    started = time.perf_counter()
    client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=1, temperature=0)
    return time.perf_counter() - started


@contextmanager
def api_process(log: Path) -> Iterator[str]:
    import httpx

    from tests.live_server import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "traindock.cli", "api", "--port", str(port)],
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            assert process.poll() is None, log.read_text()
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--training-steps", type=int, default=300)
    parser.add_argument("--model", choices=["tiny", "small"], default="tiny",
                        help="small: a 25M-parameter Llama whose tokens take milliseconds on a CPU")
    options = parser.parse_args()

    # As `traindock up` runs them: the training process leaves the inference server its threads.
    os.environ.setdefault("TRAINDOCK_TRAINING_THREADS", str(max(1, (os.cpu_count() or 1) - 1)))
    with embedded_service(options.model, "traindock-inference-") as served:
        from openai import OpenAI

        from tests.e2e.conftest import start_inference_server, stop_process

        api = served.client
        server = start_inference_server(served.workdir / "serve.log")
        try:
            # The API in a process of its own, as deployed: not sharing this client's interpreter.
            with api_process(served.workdir / "api.log") as url:
                client = OpenAI(base_url=f"{url}/v1", api_key=api.headers["Authorization"].split()[1], max_retries=0)
                lora = {"base_model": "bench-model", "dataset_id": served.dataset["id"], "data": {"cutoff_len": 128},
                        "training": {"max_steps": 2, "save_strategy": "no", "seed": 1}}
                adapters = [run_job(api, {**lora, "training": {**lora["training"], "seed": seed}}) for seed in (1, 2)]
                models = [f"ft:bench-model:traindock:ftjob-{job['id']}" for job in adapters]

                d_first, d_rate, d_count = direct(served.workdir / "models" / "bench-model", options.tokens, options.rounds)
                a_first, a_rate, a_count = through_api(client, "bench-model", options.tokens, options.rounds)
                print(f"direct generate: first token {d_first * 1000:.0f} ms, {d_rate:.0f} tokens/s ({d_count} tokens)")
                print(f"through the API: first token {a_first * 1000:.0f} ms, {a_rate:.0f} tokens/s ({a_count} tokens)")
                print(f"tokens/s service/direct = {a_rate / d_rate:.2f} (goal >= 0.9); first token through the API "
                      f"{a_first * 1000:.0f} ms (goal < 250 ms)")

                for model in models:
                    one_token_s(client, model)  # each adapter loaded once
                same = statistics.median(one_token_s(client, models[0]) for _ in range(options.rounds * 2))
                switching = statistics.median(one_token_s(client, models[i % 2]) for i in range(options.rounds * 2))
                print(f"one-token request: same adapter {same * 1000:.1f} ms, switching adapters {switching * 1000:.1f} ms; "
                      f"adapter switch {max(switching - same, 0) * 1000:.1f} ms")

                training = {**lora, "training": {"max_steps": options.training_steps, "save_strategy": "no",
                                                 "per_device_train_batch_size": 8, "logging_steps": 50}}
                alone = run_job(api, training)["result"]["real_tokens_per_second"]
                busy = threading.Event()

                def requests() -> None:
                    while not busy.is_set():
                        client.chat.completions.create(model=models[0], messages=MESSAGES, max_tokens=32, temperature=0)

                sender = threading.Thread(target=requests, daemon=True)
                sender.start()
                beside = run_job(api, training)["result"]["real_tokens_per_second"]
                busy.set()
                sender.join()
                print(f"training tokens/s ({os.environ['TRAINDOCK_TRAINING_THREADS']} threads): alone {alone:.0f}, "
                      f"with inference beside it {beside:.0f}, ratio {beside / alone:.2f}")
        finally:
            stop_process(server)


if __name__ == "__main__":
    main()
