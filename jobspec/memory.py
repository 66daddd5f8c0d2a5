"""Expected peak GPU memory of a job, from the base model's config.json (a dict: no weights, no
torch) and the spec, split into weights, trainable parameters, gradients, optimizer state and
activations.

Parameters, gradients and optimizer state are counted exactly for the decoders below, as the
worker builds them (tests/worker/test_memory_estimate.py checks them against the real model):
full fine-tuning loads fp32 weights, all trained; LoRA keeps the base in its stored dtype, frozen,
and peft keeps the adapters in fp32; every trainable parameter has an fp32 gradient. QLoRA stores
the decoder layers' linear weights in 4-bit NF4 (half a byte each, plus their double-quantized
block constants) and, after peft's prepare_model_for_kbit_training, everything else in fp32. Activations
are a rough upper bound (every micro-batch cutoff_len long, sdpa/flash attention, so no
sequence-squared term), with the fp32 logits of the loss, which dominate for large vocabularies.
Preference training (objective dpo or orpo) runs each pair's chosen and rejected answers in one
batch (twice the sequences); DPO with full fine-tuning keeps a frozen copy of the weights as its
reference model (LoRA disables the adapter instead, and reference 'precomputed' keeps none)."""

import math

from jobspec.model import JobSpec

# model_type -> (biases on q, k, v; has per-head q_norm and k_norm)
DECODERS = {"llama": (None, False), "mistral": (None, False), "qwen2": (True, False), "qwen3": (None, True)}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
FP32 = 4
# Bytes of optimizer state per trainable fp32 parameter (transformers' optimizers as configured by
# TrainingArguments); names not listed are estimated as AdamW.
ADAMW_STATE = 2 * FP32  # exp_avg and exp_avg_sq
OPTIMIZER_STATE_BYTES = {
    "sgd": 0, "lomo": 0, "adalomo": 0, "adafactor": 0,  # adafactor: factored, a few rows and columns
    "adagrad": FP32, "rmsprop": FP32, "lion_32bit": FP32, "paged_lion_32bit": FP32,
    "lion_8bit": 1, "paged_lion_8bit": 1,
    "adamw_bnb_8bit": 2, "adamw_8bit": 2, "paged_adamw_8bit": 2, "adamw_torch_8bit": 2, "adamw_torch_4bit": 1,
    "ademamix": 3 * FP32, "paged_ademamix_32bit": 3 * FP32, "ademamix_8bit": 3, "paged_ademamix_8bit": 3,
}
PER_LAYER_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# bitsandbytes NF4 with double quantization: 4 bits per weight; per block of 64 weights one 8-bit
# absmax, and per 256 such blocks one fp32 constant; a few small code tables per module.
NF4_BYTES = 0.5 + 1 / 64 + FP32 / (64 * 256)
NF4_MODULE_BYTES = 2048


class UnknownModel(ValueError):
    pass


def _linear_shapes(config: dict) -> dict[str, tuple[int, int, bool]]:
    """name -> (in features, out features, has bias) of one decoder layer's linear modules."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    qkv_bias, _ = DECODERS[config["model_type"]]
    attention_bias = bool(config.get("attention_bias", False))
    qkv_bias = attention_bias if qkv_bias is None else qkv_bias
    mlp_bias = bool(config.get("mlp_bias", False))
    inner = config["intermediate_size"]
    return {
        "q_proj": (hidden, heads * head_dim, qkv_bias),
        "k_proj": (hidden, kv_heads * head_dim, qkv_bias),
        "v_proj": (hidden, kv_heads * head_dim, qkv_bias),
        "o_proj": (heads * head_dim, hidden, attention_bias),
        "gate_proj": (hidden, inner, mlp_bias),
        "up_proj": (hidden, inner, mlp_bias),
        "down_proj": (inner, hidden, mlp_bias),
    }


def base_parameters(config: dict) -> int:
    if config.get("model_type") not in DECODERS:
        raise UnknownModel(
            f"the memory estimate knows the decoders {', '.join(sorted(DECODERS))}, not model_type "
            f"'{config.get('model_type')}'"
        )
    try:
        hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
        shapes = _linear_shapes(config)
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        raise UnknownModel(f"config.json lacks a usable {exc}") from None
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    per_layer = sum(i * o + (o if bias else 0) for i, o, bias in shapes.values())
    per_layer += 2 * hidden + (2 * head_dim if DECODERS[config["model_type"]][1] else 0)  # norms
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * per_layer + hidden


def lora_parameters(config: dict, spec: JobSpec) -> int:
    """peft's adapters: r x (in + out) per targeted linear module; 'all-linear' is every linear
    module of the layers (peft leaves the output layer out)."""
    targets = spec.lora.target_modules
    names = PER_LAYER_MODULES if targets == "all-linear" else [name.rsplit(".", 1)[-1] for name in targets]
    unknown = sorted(set(names) - set(PER_LAYER_MODULES))
    if unknown:
        raise UnknownModel(f"the memory estimate does not know the target modules {', '.join(unknown)}")
    shapes = _linear_shapes(config)
    return config["num_hidden_layers"] * sum(spec.lora.r * sum(shapes[name][:2]) for name in set(names))


def weight_bytes_per_parameter(config: dict, spec: JobSpec) -> int:
    if spec.method == "full":
        return FP32
    return DTYPE_BYTES.get(str(config.get("dtype") or config.get("torch_dtype") or "float32"), FP32)


def qlora_weight_bytes(config: dict, base: int) -> int:
    """The 4-bit linear weights of the decoder layers, the rest (embeddings, output layer, norms,
    biases) in fp32, and one linear weight dequantized to bf16/fp16 at a time for its matmul."""
    shapes = _linear_shapes(config).values()
    quantized = config["num_hidden_layers"] * sum(i * o for i, o, _bias in shapes)
    modules = config["num_hidden_layers"] * len(PER_LAYER_MODULES)
    dequantized = 2 * max(i * o for i, o, _bias in shapes)
    return math.ceil(quantized * NF4_BYTES) + modules * NF4_MODULE_BYTES + (base - quantized) * FP32 + dequantized


def activation_bytes(config: dict, spec: JobSpec) -> int:
    t = spec.training
    pairs = 2 if spec.objective != "sft" else 1  # a preference batch holds chosen and rejected sequences
    tokens = pairs * t.per_device_train_batch_size * spec.data.cutoff_len
    element = 2 if (t.bf16 or t.fp16) else FP32
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    shapes = _linear_shapes(config)
    attention = shapes["q_proj"][1] + 2 * shapes["k_proj"][1]
    # Tensors a layer keeps for its backward, per token: norm inputs and outputs, q/k/v before and
    # after rotary, the attention output, residuals, and the MLP's gate, up, activation and product.
    per_layer = 6 * hidden + 2 * attention + shapes["q_proj"][1] + 4 * config["intermediate_size"]
    if t.gradient_checkpointing:
        kept = layers * hidden + per_layer  # layer inputs, and one layer recomputed at a time
    else:
        kept = layers * per_layer
    # Logits in the compute dtype, their fp32 copy for the loss, and its fp32 gradient.
    logits = config["vocab_size"] * (element + 2 * FP32)
    return tokens * (kept * element + logits)


def memory_estimate(config: dict, spec: JobSpec, gpu: tuple[float, str] | None = None) -> dict:
    """Per GPU: {"parameters": {...}, "bytes": {...}, "peak_gib": ..., "notes": [...]}, or
    {"unavailable": reason} for a model this estimate does not know. `gpu`: (GB, what it is) of
    the GPU to compare with when the spec gives no resources.gpu_memory_gb."""
    try:
        base = base_parameters(config)
        adapters = lora_parameters(config, spec) if spec.method != "full" else 0
    except UnknownModel as exc:
        return {"unavailable": str(exc)}
    trainable = base if spec.method == "full" else adapters
    frozen = 0 if spec.method == "full" else base
    state = OPTIMIZER_STATE_BYTES.get(spec.training.optim, ADAMW_STATE)
    weights = (qlora_weight_bytes(config, base) if spec.method == "qlora"
               else frozen * weight_bytes_per_parameter(config, spec))
    # FSDP keeps 1/N of the weights, gradients and optimizer state on each of the N GPUs (the
    # layer being computed is gathered whole for a moment: one layer, left out here).
    shards = spec.resources.gpus if spec.resources.strategy == "fsdp" else 1
    parts = {
        "weights": math.ceil(weights / shards),
        "trainable_parameters": math.ceil(trainable * FP32 / shards),
        "gradients": math.ceil(trainable * FP32 / shards),
        "optimizer_state": math.ceil(trainable * state / shards),
        "activations": activation_bytes(config, spec),
    }
    if reference_copy(spec):
        parts["reference_model"] = math.ceil(base * weight_bytes_per_parameter(config, spec) / shards)
    parts["total"] = sum(parts.values())
    estimate = {
        "parameters": {"total": base + adapters, "trainable": trainable},
        "bytes": parts,
        "peak_gib": round(parts["total"] / 2**30, 2),
        "notes": [
            "weights, trainable parameters, gradients and optimizer state are exact; activations are "
            "a rough upper bound (micro-batches of cutoff_len tokens, sdpa or flash attention)",
            "excludes the CUDA context and allocator overhead (about 0.5-1 GiB)",
        ],
    }
    if "reference_model" in parts:
        estimate["notes"].append("dpo with full fine-tuning: a frozen copy of the weights is the reference model "
                                 "(preference.reference 'precomputed' avoids it)")
    if spec.method == "qlora":
        estimate["notes"].append("qlora: 4-bit NF4 linear weights (about 0.52 byte each with their constants); "
                                 "embeddings, output layer and norms in fp32 (peft upcasts them)")
    if shards > 1:
        estimate["notes"].append(f"per GPU: fsdp shards weights, gradients and optimizer state over {shards} GPUs "
                                 "(plus one decoder layer gathered at a time)")
    hint, what = spec.resources.gpu_memory_gb, "resources.gpu_memory_gb"
    if hint is None and gpu is not None:
        hint, what = gpu
        estimate["compared_with"] = f"{what}: {hint:g} GB"
    if hint is not None and parts["total"] > hint * 1e9:
        estimate["suggestion"] = _suggestion(spec, parts, hint, what)
    return estimate


def reference_copy(spec: JobSpec) -> bool:
    """DPO on a full fine-tune keeps a second, frozen model for the reference log-probs."""
    return spec.objective == "dpo" and spec.method == "full" and spec.preference.reference == "model"


def _suggestion(spec: JobSpec, parts: dict, hint: float, what: str) -> str:
    t = spec.training
    largest = max(("weights", "trainable_parameters", "gradients", "optimizer_state", "activations"),
                  key=parts.get)
    ways = {
        "activations": [] if t.gradient_checkpointing else ["set gradient_checkpointing to true"],
        "optimizer_state": ["use method 'lora'"] if spec.method == "full" else [],
        "gradients": ["use method 'lora'"] if spec.method == "full" else [],
        "trainable_parameters": ["use method 'lora'"] if spec.method == "full" else ["lower lora.r"],
        "weights": ["use method 'qlora' (4-bit base weights)"] if spec.method == "lora" else [],
    }[largest]
    if largest == "activations" and t.per_device_train_batch_size > 1:
        half = math.ceil(t.per_device_train_batch_size / 2)
        ways.append(f"lower per_device_train_batch_size to {half} and double gradient_accumulation_steps")
    advice = "; or ".join(ways) if ways else "use a GPU with more memory or a smaller base model"
    return (f"the estimated peak of {parts['total'] / 1e9:.1f} GB exceeds {what} "
            f"{hint:g}; {largest.replace('_', ' ')} take the most: {advice}")
