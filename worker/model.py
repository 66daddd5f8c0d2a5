"""The base model and tokenizer of a job, and the LoRA adapters (on a 4-bit base for QLoRA) or
full fine-tuning on top."""

import importlib.util
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel

from jobspec.model import JobSpec
from traindock.paths import PathRefused, resolve_base_model
from traindock.settings import get_settings
from worker.errors import BadModel, QloraUnavailable, is_out_of_memory


def model_source(base_model: str, model_roots: list[Path]) -> str:
    """A folder inside a model root, or the hub id itself."""
    try:
        folder = resolve_base_model(base_model, model_roots)
    except PathRefused as exc:
        raise BadModel(f"base_model '{base_model}' {exc}") from None
    if folder is None:
        return base_model
    if not (folder / "config.json").is_file():
        raise BadModel(f"base_model '{base_model}': the folder {folder} has no config.json, so it is not a model")
    return str(folder)


def _load(what: str, base_model: str, load):
    try:
        return load()
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        raise BadModel(
            f"base_model '{base_model}': the {what} could not be loaded (a hub id must be in the "
            f"local cache when the hub is unreachable): {type(exc).__name__}: {exc}"
        ) from exc


def remote_code_allowed(spec: JobSpec) -> bool:
    """Both the spec and this server's settings must allow running a model's own code (the API
    refuses the spec otherwise; this holds even for a spec that got past it)."""
    return spec.trust_remote_code and get_settings().allow_trust_remote_code


def load_tokenizer(source: str, base_model: str, *, trust_remote_code: bool = False):
    tokenizer = _load("tokenizer", base_model,
                      lambda: AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code))
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise BadModel(f"base_model '{base_model}': the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def require_qlora_support() -> None:
    """QLoRA's 4-bit kernels are bitsandbytes' CUDA ones: refuse before anything is loaded."""
    if not torch.cuda.is_available():
        raise QloraUnavailable("method 'qlora' needs a CUDA GPU, and this worker has none")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise QloraUnavailable("method 'qlora' needs bitsandbytes, which is not installed on this worker")


def qlora_compute_dtype(spec: JobSpec) -> torch.dtype:
    return torch.bfloat16 if spec.training.bf16 else torch.float16  # the rules require one of the two


def load_model(source: str, base_model: str, spec: JobSpec) -> PreTrainedModel:
    # Full fine-tuning keeps fp32 master weights (mixed precision autocasts from them); LoRA trains
    # only the adapters, so the frozen base may stay in its stored dtype and half the memory;
    # QLoRA stores the base's linear weights in 4-bit NF4.
    trust = remote_code_allowed(spec)
    if spec.method == "qlora":
        compute = qlora_compute_dtype(spec)
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_compute_dtype=compute, bnb_4bit_use_double_quant=True)
        return _load("model", base_model, lambda: AutoModelForCausalLM.from_pretrained(
            source, dtype=compute, quantization_config=quantization, trust_remote_code=trust,
            device_map={"": torch.cuda.current_device()}))
    dtype = torch.float32 if spec.method == "full" else "auto"
    return _load("model", base_model,
                 lambda: AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=trust))


def prepare_for_training(model: PreTrainedModel, spec: JobSpec, adapter: Path | None = None):
    """The model with LoRA adapters (methods lora and qlora; `adapter`: an earlier job's, trained
    further) or as is (method full)."""
    if spec.method == "full":
        return model
    model = prepare_base(model, spec)
    if adapter is not None:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    return get_peft_model(model, lora_config(spec))


def prepare_base(model: PreTrainedModel, spec: JobSpec) -> PreTrainedModel:
    """A LoRA job's base before its adapters go on (QLoRA's and gradient checkpointing's needs)."""
    if spec.method == "qlora":
        # Freezes the base and upcasts its non-4-bit parameters (norms, embeddings, output layer) to
        # fp32 for stable training; gradient checkpointing only as the spec asks.
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=spec.training.gradient_checkpointing)
    if spec.training.gradient_checkpointing:
        # Checkpointed blocks of a frozen base would otherwise see inputs without grad.
        model.enable_input_require_grads()
    return model


def lora_config(spec: JobSpec) -> LoraConfig:
    lora = spec.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
