"""The memory estimate's parameter, gradient and optimizer-state bytes against the real tiny Llama
as the worker builds it (full fine-tuning, LoRA on fp32 and bf16 bases), after a real optimizer
step of the Trainer's own optimizer."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

from jobspec.memory import memory_estimate
from jobspec.model import JobSpec
from jobspec.training_args import training_arguments
from worker.model import load_model, prepare_for_training
from worker.tinymodel import build_tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    fp32 = build_tiny_model(root / "fp32")
    bf16 = root / "bf16"
    AutoModelForCausalLM.from_pretrained(fp32).to(torch.bfloat16).save_pretrained(bf16)
    return {"float32": fp32, "bfloat16": bf16}


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


CASES = [
    ("float32", {"method": "full"}),
    ("float32", {"method": "lora"}),
    ("bfloat16", {"method": "lora"}),
    ("bfloat16", {"method": "lora", "lora": {"r": 3, "target_modules": ["q_proj", "self_attn.v_proj", "down_proj"]}}),
]


@pytest.mark.parametrize(("dtype", "fields"), CASES)
def test_parameter_gradient_and_optimizer_bytes_are_the_real_models(models, tmp_path, dtype, fields):
    spec = JobSpec.model_validate({"base_model": "tiny", "dataset_id": 1, **fields,
                                   "training": {"optim": "adamw_torch", "per_device_train_batch_size": 2}})
    model = prepare_for_training(load_model(str(models[dtype]), "tiny", spec), spec)
    estimate = memory_estimate(json.loads((models[dtype] / "config.json").read_text()), spec)

    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    trainer = Trainer(model=model, args=TrainingArguments(**training_arguments(spec, str(tmp_path))))
    optimizer = trainer.create_optimizer()
    ids = torch.randint(0, 700, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    state = [value for per_parameter in optimizer.state.values() for name, value in per_parameter.items()
             if name != "step"]  # a scalar step count per tensor, not per parameter

    assert estimate["parameters"] == {"total": sum(p.numel() for p in model.parameters()),
                                      "trainable": sum(p.numel() for p in trainable)}
    assert estimate["bytes"]["weights"] == tensor_bytes(frozen)
    assert estimate["bytes"]["trainable_parameters"] == tensor_bytes(trainable)
    assert estimate["bytes"]["gradients"] == tensor_bytes(p.grad for p in trainable)
    assert estimate["bytes"]["optimizer_state"] == tensor_bytes(state) == 2 * 4 * sum(p.numel() for p in trainable)
    assert estimate["bytes"]["activations"] > 0
