"""An OpenAI `fine_tuning.jobs.create` body as a traindock job spec.

`model` is a base model (a folder in a model root, or a hub id), the `fine_tuned_model` of an
earlier job of the tenant, which the new job trains further, or a `fine_tuned_model_checkpoint`,
which it continues from (resume_from_checkpoint). Hyperparameters map onto the
spec; "auto" (or leaving one out) picks: n_epochs 3, batch_size 8, learning_rate_multiplier 1
(learning rate = multiplier x 2e-4 for LoRA, x 2e-5 for full fine-tuning). `method` {"type": "dpo"}
trains objective 'dpo' on a preference file, its hyperparameters' `beta` ("auto": 0.1) becoming
preference.beta; "supervised" is objective 'sft'; "reinforcement" is refused. traindock's own spec
fields (`data`, `lora`, `training`, `output_dir`, `resources`, a string `method` "lora"/"full",
...) come through the client's `extra_body`; an explicit hyperparameter overrides them."""

import copy
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.openai_compat import ids
from api.openai_compat.errors import OpenAIError

BASE_LEARNING_RATE = {"lora": 2e-4, "full": 2e-5}
AUTO = {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1.0}
OPENAI_FIELDS = {"model", "training_file", "validation_file", "hyperparameters", "method", "suffix", "seed",
                 "metadata", "integrations"}


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_epochs: Literal["auto"] | Annotated[int, Field(ge=1, le=10000)] = "auto"
    batch_size: Literal["auto"] | Annotated[int, Field(ge=1, le=65536)] = "auto"
    learning_rate_multiplier: Literal["auto"] | Annotated[float, Field(gt=0, le=10000)] = "auto"


class DpoHyperparameters(Hyperparameters):
    beta: Literal["auto"] | Annotated[float, Field(gt=0, le=100)] = "auto"


class OpenAIJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=1024)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(None, max_length=64)
    hyperparameters: Hyperparameters | None = None
    suffix: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    integrations: list[dict[str, Any]] | None = None


def split_body(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(OpenAI fields, traindock spec fields, OpenAI `method`). A `method` object is OpenAI's; a
    string is traindock's ("lora" or "full")."""
    openai = {key: value for key, value in body.items() if key in OPENAI_FIELDS and key != "method"}
    native = copy.deepcopy({key: value for key, value in body.items() if key not in OPENAI_FIELDS})
    method = body.get("method")
    if isinstance(method, str):
        native["method"] = method
        method = None
    return openai, native, method


def method_hyperparameters(method: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """(OpenAI's method type, its hyperparameters): "supervised" or "dpo"; others are refused."""
    if method is None:
        return "supervised", None
    if not isinstance(method, dict):
        raise OpenAIError(400, "method must be an object such as {\"type\": \"supervised\"}", param="method")
    kind = method.get("type", "supervised")
    if kind not in ("supervised", "dpo"):
        raise OpenAIError(400, f"method.type '{kind}' is not supported: traindock trains 'supervised' and 'dpo' "
                          "(no reinforcement fine-tuning)", param="method.type", code="unsupported_method")
    settings = method.get(kind) or {}
    if not isinstance(settings, dict):
        raise OpenAIError(400, f"method.{kind} must be an object", param=f"method.{kind}")
    return kind, settings.get("hyperparameters")


def apply_method(spec: dict[str, Any], kind: str, given: Hyperparameters) -> None:
    """OpenAI's DPO as objective 'dpo', its beta ("auto": the spec's default) as preference.beta."""
    if kind != "dpo":
        return
    spec["objective"] = "dpo"
    if isinstance(given, DpoHyperparameters) and given.beta != "auto":
        preference = spec.setdefault("preference", {})
        if not isinstance(preference, dict):
            raise OpenAIError(400, "preference must be an object", param="preference")
        preference["beta"] = given.beta


def file_id(text: str | None, param: str) -> int | None:
    if text is None:
        return None
    number = ids.decode(ids.FILE, text)
    if number is None:
        raise OpenAIError(404, f"no file {text!r}", param=param, code="file_not_found")
    return number


def apply_hyperparameters(spec: dict[str, Any], given: Hyperparameters) -> None:
    """Into `spec` (a dict for JobSpec): explicit values win over extra_body's training fields;
    "auto" keeps extra_body's value or picks the documented default."""
    training = spec.setdefault("training", {})
    method = spec.get("method", "lora")
    if given.n_epochs != "auto":
        training["num_train_epochs"] = given.n_epochs
    else:
        training.setdefault("num_train_epochs", AUTO["n_epochs"])
    if given.batch_size != "auto":
        training["per_device_train_batch_size"] = given.batch_size
    else:
        training.setdefault("per_device_train_batch_size", AUTO["batch_size"])
    multiplier = AUTO["learning_rate_multiplier"] if given.learning_rate_multiplier == "auto" else given.learning_rate_multiplier
    if given.learning_rate_multiplier != "auto" or "learning_rate" not in training:
        training["learning_rate"] = multiplier * BASE_LEARNING_RATE.get(method, BASE_LEARNING_RATE["lora"])
