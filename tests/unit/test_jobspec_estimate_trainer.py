"""estimate() against a real (tiny, CPU) transformers Trainer run: the step, evaluation and
checkpoint counts it predicts are the ones the Trainer produces. Single device only."""

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from jobspec import JobSpec, estimate, spec_problems, split_sizes, training_arguments  # noqa: E402


class Count(transformers.TrainerCallback):
    def __init__(self):
        self.evaluations = self.saves = 0

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluations += 1

    def on_save(self, args, state, control, **kwargs):
        self.saves += 1


@pytest.fixture(scope="module")
def model():
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def rows(n: int) -> list[dict]:
    ids = torch.randint(0, 64, (n, 8))
    return [{"input_ids": row, "labels": row, "attention_mask": torch.ones(8, dtype=torch.long)} for row in ids]


CASES = [
    # dataset rows, data, training
    (10, {}, {"micro_batch_size": 2, "num_train_epochs": 1.5}),
    (11, {}, {"per_device_train_batch_size": 3, "gradient_accumulation_steps": 2, "num_train_epochs": 2.3}),
    (7, {}, {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 3, "num_train_epochs": 0.4}),
    (9, {}, {"per_device_train_batch_size": 4, "max_steps": 7, "warmup_steps": 3}),
    (20, {"val_set_size": 0.2}, {
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "num_train_epochs": 1.5,
        "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "steps", "save_steps": 3,
        "warmup_ratio": 0.3,
    }),
    (12, {"val_set_size": 2}, {
        "per_device_train_batch_size": 2, "num_train_epochs": 2.5, "eval_strategy": "epoch",
        "save_strategy": "epoch", "logging_steps": 0.25, "warmup_steps": 0.05,
    }),
    (13, {"val_set_size": 0.1}, {
        "per_device_train_batch_size": 2, "num_train_epochs": 1, "eval_strategy": "steps",
        "eval_steps": 0.3, "save_strategy": "steps", "save_steps": 0.3, "load_best_model_at_end": True,
    }),
]


@pytest.mark.parametrize(("n", "data", "training"), CASES, ids=range(len(CASES)))
def test_estimate_matches_trainer(model, tmp_path, n, data, training):
    spec = JobSpec(base_model="m", dataset_id=1, data=data,
                   training={"save_strategy": "no", "optim": "adamw_torch", **training})
    assert spec_problems(spec) == []
    expected = estimate(spec, n)
    train_rows, eval_rows = split_sizes(n, spec.data.val_set_size)
    dataset = rows(n)
    counter = Count()
    trainer = transformers.Trainer(
        model=model,
        args=transformers.TrainingArguments(**training_arguments(spec, str(tmp_path)), use_cpu=True),
        train_dataset=dataset[:train_rows],
        eval_dataset=dataset[train_rows:] or None,
        callbacks=[counter],
    )
    trainer.train()
    assert trainer.state.max_steps == trainer.state.global_step == expected["total_steps"]
    assert trainer.args.get_warmup_steps(trainer.state.max_steps) == expected["warmup_steps"]
    assert counter.evaluations == expected["evaluations"]
    assert counter.saves == expected["checkpoints"]
