"""The service as the benchmarks run it: a fresh data dir holding a bench model, migrated, one real
worker (started as the tests start theirs) and an API client with a key of its own, with the demo
dataset uploaded."""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def build_model(kind: str, folder: Path) -> None:
    from worker.tinymodel import build_tiny_model, build_tokenizer

    if kind == "tiny":
        build_tiny_model(folder)
        return
    from transformers import LlamaConfig, LlamaForCausalLM, set_seed

    tokenizer = build_tokenizer()
    if kind == "small":  # ~25M parameters with the tiny model's tokenizer
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
            num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        )
        set_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return
    config = LlamaConfig(  # ~0.47B parameters, random weights: no hub needed
        vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
        num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    set_seed(0)
    model = LlamaForCausalLM(config)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters", flush=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@dataclass
class Service:
    client: Any  # fastapi's TestClient, imported once the settings are in the environment
    dataset: dict  # the demo dataset as POST /datasets answered
    workdir: Path
    worker_pid: int


@contextmanager
def embedded_service(model: str, prefix: str, gpus: str | None = None) -> Iterator[Service]:
    """The bench model is named `bench-model`; the worker stops on the way out."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(TRAINDOCK_DATA_DIR=str(workdir / "data"),
                      TRAINDOCK_MODEL_ROOTS=json.dumps([str(workdir / "models")]))
    from fastapi.testclient import TestClient

    from api.app import create_app
    from db.engine import session_scope
    from db.tenants import issue_key
    from tests.e2e.conftest import start_worker, stop_worker
    from traindock.cli import migrate

    build_model(model, workdir / "models" / "bench-model")
    migrate()
    worker = start_worker(workdir / "worker.log", gpus=gpus)
    try:
        with session_scope() as session:
            key = issue_key(session, "bench").secret
        with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as client:
            demo = (REPO / "traindock" / "data" / "alpaca_demo.jsonl").read_bytes()
            dataset = client.post("/datasets", files={"file": ("demo.jsonl", demo)}).json()
            yield Service(client, dataset, workdir, worker.pid)
    finally:
        stop_worker(worker)
