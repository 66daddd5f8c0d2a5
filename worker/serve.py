"""The inference server (`traindock serve`): a worker-side HTTP process that generates with base
models, fine-tuned models and checkpoints for the API's /v1/chat/completions and /v1/completions.
The API process never imports torch; it resolves a request's model from its records and sends it
here (api/inference.py). The server registers its URL in the worker registry (queue `inference`)
and beats like a training worker, so the API finds live servers there.

POST /generate takes {"target": {base, adapter, weights, format}, "prompt": text or messages,
"prompt_param", "max_tokens", "temperature", "top_p", "stop", "seed"} and answers NDJSON lines:
{"text": piece} as generated, then {"finish_reason", "prompt_tokens", "completion_tokens",
"seconds"}; or, before any text, a 4xx/503 {"error": {"message", "param", "code"}}.
"""

import ipaddress
import json
import logging
import os
import queue
import secrets
import socket
import sys
import threading
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from traindock.settings import get_settings
from jobspec.inference import InferenceTarget
from worker.inference import Engine, Finished, InferenceError, Sampling

log = logging.getLogger(__name__)
INFERENCE_QUEUE = "inference"
INFERENCE_NICENESS = 10


class GenerateBody(BaseModel):
    target: InferenceTarget
    prompt: str | list[dict[str, Any]]
    prompt_param: str = "prompt"
    max_tokens: int = Field(ge=1)
    fit_context: bool = False
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] = []
    seed: int | None = None


def create_server(engine: Engine | None = None) -> FastAPI:
    settings = get_settings()
    engine = engine or Engine(settings)
    app = FastAPI(title="traindock inference server", docs_url=None, redoc_url=None, openapi_url=None)
    token = settings.inference_token.get_secret_value() if settings.inference_token else None

    @app.get("/health")
    def health():
        return {"status": "ok", "loaded": [key.rpartition("@")[0] for key in list(engine.models)], "waiting": engine.waiting}

    @app.post("/generate")
    async def generate(body: GenerateBody, request: Request):
        if token and not secrets.compare_digest(request.headers.get("x-traindock-inference-token", ""), token):
            return JSONResponse({"error": {"message": "wrong inference token", "code": "unauthorized"}}, 401)
        sampling = Sampling(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                            stop=tuple(body.stop), seed=body.seed, fit_context=body.fit_context)
        took = threading.Event()

        def take_turn_and_prepare():
            engine.take_turn()
            took.set()
            return engine.prepare(body.target, body.prompt, sampling, prompt_param=body.prompt_param)

        try:
            prepared = await run_in_threadpool(take_turn_and_prepare)
        except BaseException as exc:  # a refusal, a failed load, or this request cancelled meanwhile
            if took.is_set():
                engine.end_turn()
            if isinstance(exc, InferenceError):
                return _refusal(exc)
            raise
        # The generation runs in a thread of its own from here, whatever becomes of the response,
        # and gives the turn back when it ends: a client gone (even before the body began) only
        # makes it stop at its next token.
        lines: queue.SimpleQueue = queue.SimpleQueue()
        abandoned = threading.Event()

        def produce() -> None:
            try:
                for item in engine.stream(prepared, sampling, abandoned):
                    lines.put(json.dumps(item.__dict__ if isinstance(item, Finished) else {"text": item}) + "\n")
            except Exception as exc:
                log.exception("generation failed")
                lines.put(json.dumps({"error": {"message": f"generation failed: {type(exc).__name__}: {exc}",
                                                "code": "generation_failed"}}) + "\n")
            finally:
                engine.end_turn()
                lines.put(None)

        threading.Thread(target=produce, name="traindock-generation", daemon=True).start()

        async def relayed():
            try:
                while (line := await run_in_threadpool(lines.get)) is not None:
                    yield line
            finally:
                abandoned.set()

        return _Streamed(relayed(), abandoned)

    return app


class _Streamed(StreamingResponse):
    """Marks the generation abandoned whenever the response ends, even one whose body never began."""

    def __init__(self, content, abandoned: threading.Event):
        super().__init__(content, media_type="application/x-ndjson")
        self.abandoned = abandoned

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.abandoned.set()


def _refusal(exc: InferenceError) -> JSONResponse:
    return JSONResponse({"error": {"message": exc.message, "param": exc.param, "code": exc.code}}, exc.status)


def serve(host: str, port: int, advertise_url: str | None, name: str | None) -> None:
    """Bind first (port 0 takes a free one), register the URL that reaches this server, then serve."""
    import uvicorn

    from worker.registry import mark_stopped, start_registry_thread

    settings = get_settings()
    settings.ensure_dirs()
    torch.set_num_threads(settings.inference_threads)
    # A training job on the same machine comes first: generation takes the CPU it leaves (on CPU
    # machines an oversubscribed training process's threads otherwise wait on each other).
    os.nice(INFERENCE_NICENESS)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    url = advertise_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{bound}"
    name = name or f"serve-{socket.gethostname()}-{bound}"
    server = uvicorn.Server(uvicorn.Config(create_server(), log_level="warning"))
    start_registry_thread(name, [INFERENCE_QUEUE], inference_url=url)
    if not settings.inference_token and not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
        print(f"warning: listening on {host} without TRAINDOCK_INFERENCE_TOKEN: whoever reaches this port can "
              "generate with every model it can load", file=sys.stderr, flush=True)
    print(f"inference server ready at {url} (registered as {name}; {settings.inference_threads} CPU threads, "
          f"{settings.inference_memory_gb:g} GB for models)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        mark_stopped(name)
