"""The memory estimate from config.json alone: known parameter counts of published models, the
byte split, and the suggestion against a GPU size hint."""

from jobspec.memory import memory_estimate
from jobspec.model import JobSpec

LLAMA_2_7B = {
    "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
    "tie_word_embeddings": False, "dtype": "float16",
}
QWEN2_5_0_5B = {
    "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}


def spec(**fields) -> JobSpec:
    return JobSpec.model_validate({"base_model": "m", "dataset_id": 1, **fields})


def test_parameter_counts_of_published_models():
    assert memory_estimate(LLAMA_2_7B, spec(method="full"))["parameters"]["total"] == 6_738_415_616
    assert memory_estimate(QWEN2_5_0_5B, spec(method="full"))["parameters"]["total"] == 494_032_768


def test_lora_on_llama_2_7b_splits_frozen_half_precision_weights_from_fp32_adapters():
    estimate = memory_estimate(LLAMA_2_7B, spec(lora={"r": 8, "target_modules": ["q_proj", "v_proj"]}))
    adapters = 32 * 2 * 8 * (4096 + 4096)  # the well-known 4,194,304 of r=8 on q and v
    assert estimate["parameters"] == {"total": 6_738_415_616 + adapters, "trainable": adapters}
    parts = estimate["bytes"]
    assert parts["weights"] == 2 * 6_738_415_616
    assert parts["trainable_parameters"] == parts["gradients"] == 4 * adapters
    assert parts["optimizer_state"] == 8 * adapters
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")


def test_activations_shrink_with_checkpointing_and_grow_with_the_batch():
    def activations(**training):
        return memory_estimate(LLAMA_2_7B, spec(training=training))["bytes"]["activations"]

    assert activations(gradient_checkpointing=True) < activations() / 5
    assert activations(per_device_train_batch_size=16) == 2 * activations()


def test_a_gpu_size_hint_gets_a_suggestion_only_when_exceeded():
    full = spec(method="full", training={"optim": "adamw_torch"}, resources={"gpu_memory_gb": 80})
    assert "use method 'lora'" in memory_estimate(LLAMA_2_7B, full)["suggestion"]
    small = spec(training={"per_device_train_batch_size": 1, "gradient_checkpointing": True},
                 data={"cutoff_len": 256}, resources={"gpu_memory_gb": 80})
    assert "suggestion" not in memory_estimate(LLAMA_2_7B, small)


def test_unknown_models_and_modules_are_reported_not_guessed():
    assert "model_type 'gpt2'" in memory_estimate({"model_type": "gpt2"}, spec())["unavailable"]
    assert "lm_head" in memory_estimate(LLAMA_2_7B, spec(lora={"target_modules": ["lm_head"]}))["unavailable"]
    assert "unavailable" in memory_estimate({"model_type": "llama"}, spec())


def test_qlora_stores_the_layers_linear_weights_in_4_bits_and_the_rest_in_fp32():
    estimate = memory_estimate(LLAMA_2_7B, spec(method="qlora", training={"bf16": True}))
    linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)  # what bitsandbytes quantizes
    rest = 6_738_415_616 - linear  # embeddings, output layer, norms: upcast to fp32 by peft
    nf4 = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits, an 8-bit absmax per 64, an fp32 per 256 blocks
    one_layer_dequantized = 2 * 4096 * 11008
    expected = linear * nf4 + 32 * 7 * 2048 + 4 * rest + one_layer_dequantized
    assert abs(estimate["bytes"]["weights"] - expected) < 1
    lora = memory_estimate(LLAMA_2_7B, spec(training={"bf16": True}))
    assert estimate["parameters"] == lora["parameters"]  # the same adapters train
    assert estimate["bytes"]["weights"] < 0.34 * lora["bytes"]["weights"]  # about 4.4 GB instead of 13.5 GB
    assert any("qlora" in note for note in estimate["notes"])


def test_a_lora_job_whose_weights_exceed_the_gpu_is_pointed_to_qlora():
    big = spec(training={"per_device_train_batch_size": 1, "gradient_checkpointing": True},
               data={"cutoff_len": 128}, resources={"gpu_memory_gb": 12})
    assert "use method 'qlora'" in memory_estimate(LLAMA_2_7B, big)["suggestion"]


def test_fsdp_shards_weights_gradients_and_optimizer_state_but_not_activations():
    ddp = memory_estimate(LLAMA_2_7B, spec(method="full", resources={"gpus": 4}))["bytes"]
    fsdp = memory_estimate(LLAMA_2_7B, spec(method="full", resources={"gpus": 4, "strategy": "fsdp"}))
    assert ddp["weights"] == 0 and ddp["trainable_parameters"] == 4 * 6_738_415_616  # ddp: a whole copy per GPU
    for part in ("trainable_parameters", "gradients", "optimizer_state"):
        assert fsdp["bytes"][part] == ddp[part] / 4
    assert fsdp["bytes"]["activations"] == ddp["activations"]
    assert fsdp["parameters"]["total"] == 6_738_415_616  # the model's, not a shard's
    assert any("over 4 GPUs" in note for note in fsdp["notes"])
