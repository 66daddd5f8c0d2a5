"""Generation through the inference servers (worker/serve.py): which model a request names, as
the server loads it, and the server's answer as text pieces. The API itself never loads a model.

A request's `model` is a base model of the model roots, a tenant's `fine_tuned_model`
(ft:<base>:<suffix>:ftjob-<id>) or a checkpoint's `fine_tuned_model_checkpoint`
(...:ckpt-step-<step>). Only what the API's records name is sent: folders inside a model root or
the jobs folder, which the server confines again."""

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session

from api.model_catalog import base_models
from api.openai_compat.errors import OpenAIError
from api.openai_compat.models import checkpoint_source, fine_tuned_job
from db.checkpoints import usable_checkpoint
from traindock.storage import get_store
from db.datasets import get_dataset
from db.models import Job, Tenant
from db.workers import live_inference_urls
from jobspec.inference import InferenceTarget
from traindock.settings import Settings

# A generation may wait for its turn (inference_queue_timeout_s) and then for each token.
READ_TIMEOUT_S = 600.0


@dataclass
class Generated:
    """The end of a generation, as the server reports it."""
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def resolve_target(session: Session, settings: Settings, tenant: Tenant, model: str) -> InferenceTarget:
    """What `model` names, for the server; OpenAIError 404 when it names nothing of the tenant's."""
    if model.startswith("ft:"):
        found = checkpoint_source(session, tenant, model)
        if found is not None:
            job, step = found
            checkpoint = usable_checkpoint(session, job.id, step)
            if checkpoint is None:  # rotated out since checkpoint_source looked
                raise OpenAIError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
            return _job_target(session, settings, job, get_store().local_path(checkpoint.path))
        job = fine_tuned_job(session, tenant, model)
        return _job_target(session, settings, job, get_store().local_path(job.result["final_model_path"]))
    if any(info.name == model for info in base_models(settings.effective_model_roots)):
        return InferenceTarget(base=model)
    raise OpenAIError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")


def _job_target(session: Session, settings: Settings, job: Job, folder: Path) -> InferenceTarget:
    try:
        relative = folder.resolve().relative_to(settings.jobs_dir.resolve()).as_posix()
    except ValueError:  # recorded under another data folder: not servable from this one
        raise OpenAIError(404, "the model's files are not in this server's jobs folder", param="model",
                          code="model_not_found") from None
    spec = job.spec
    fmt = spec.get("data", {}).get("format", "auto")
    if fmt == "auto":
        dataset = get_dataset(session, job.dataset_id) if job.dataset_id else None
        fmt = dataset.format if dataset is not None else None  # deleted: prompted as a base model
    if spec.get("method") == "full":
        return InferenceTarget(base=spec["base_model"], weights=relative, format=fmt)
    return InferenceTarget(base=spec["base_model"], adapter=relative, format=fmt)


def server_url(session: Session, settings: Settings) -> str:
    urls = live_inference_urls(session, settings.heartbeat_timeout_s)
    if not urls:
        raise OpenAIError(503, "no inference server is running: start one with `traindock serve` "
                          "(`traindock up` starts one)", code="no_inference_server")
    return random.choice(urls)


async def generate(url: str, settings: Settings, target: InferenceTarget,
                   prompt: str | list[dict[str, Any]], *, prompt_param: str, max_tokens: int, temperature: float, top_p: float, stop: list[str],
                   seed: int | None, fit_context: bool = False) -> AsyncIterator[str | Generated]:
    """Text pieces, then one Generated. A refusal before the first piece is an OpenAIError."""
    body = {"target": target.model_dump(), "prompt": prompt, "prompt_param": prompt_param, "max_tokens": max_tokens,
            "temperature": temperature, "top_p": top_p, "stop": stop, "seed": seed,
            "fit_context": fit_context}
    headers = {}
    if settings.inference_token:
        headers["x-traindock-inference-token"] = settings.inference_token.get_secret_value()
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=5.0)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            async with client.stream("POST", f"{url}/generate", json=body, headers=headers) as response:
                if response.status_code != 200:
                    raise _refusal(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    item = json.loads(line)
                    if "text" in item:
                        yield item["text"]
                    elif "error" in item:
                        raise OpenAIError(500, item["error"]["message"], code=item["error"].get("code"))
                    else:
                        yield Generated(**item)
    except httpx.HTTPError as exc:
        raise OpenAIError(503, f"the inference server at {url} did not answer: {type(exc).__name__}",
                          code="inference_server_unavailable") from None


def _refusal(status: int, content: bytes) -> OpenAIError:
    """The server's refusal of the request (400, 404, 503) as the client's; anything else (its own
    401 or 422, a crash's plain-text 500) is the service's fault: 502."""
    try:
        error = json.loads(content).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if status not in (400, 404, 503) or not error.get("message"):
        return OpenAIError(502, f"the inference server failed ({status}): "
                           f"{error.get('message') or content[:200].decode(errors='replace')}",
                           code="inference_server_error")
    return OpenAIError(status, error["message"], param=error.get("param"), code=error.get("code"))
