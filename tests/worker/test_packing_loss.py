"""Packing on the real tiny Llama: each example's loss packed equals its loss alone (fp32, CPU),
prompt masking included, and a model that lets packed examples see each other is refused."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.worker.conftest import DEMO_ROWS
from worker.data import IGNORE_INDEX, ExampleBuilder, build_examples
from worker.errors import TrainingFailure
from worker.packing import (
    REAL_TOKENS, PackedCollator, check_examples_stay_apart, keep_examples_apart, pack_examples,
)
from worker.tinymodel import build_tiny_model

CUTOFF = 256


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    return folder, AutoTokenizer.from_pretrained(folder)


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each position's prediction of the next token (0 where ignored)."""
    shifted = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    return torch.nn.functional.cross_entropy(
        logits.float().transpose(1, 2), shifted, ignore_index=IGNORE_INDEX, reduction="none")


def loss_alone(model, example: dict) -> float:
    input_ids, labels = torch.tensor([example["input_ids"]]), torch.tensor([example["labels"]])
    losses = token_losses(model(input_ids=input_ids).logits, labels)
    return (losses.sum() / (labels[:, 1:] != IGNORE_INDEX).sum()).item()


def losses_packed(model, rows: list[dict]) -> list[tuple[list[int], float]]:
    """(input_ids, loss) of every example in a batch of packed rows."""
    batch = PackedCollator(pad_token_id=0)(rows)
    batch.pop(REAL_TOKENS)
    losses = token_losses(model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"])
    found = []
    for row, row_losses in zip(rows, losses):
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        for a, b in zip(starts, starts[1:]):
            # Positions a..b-2 predict the example's tokens a+1..b-1; b-1 predicts the next example's
            # first token, whose label packing ignores.
            learned = torch.tensor(row["labels"][a + 1 : b]) != IGNORE_INDEX
            assert row_losses[b - 1] == 0
            found.append((row["input_ids"][a:b], (row_losses[a : b - 1].sum() / learned.sum()).item()))
    return found


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_examples_loss_packed_equals_its_loss_alone_with_prompt_masking(tiny, attention):
    folder, tokenizer = tiny
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attention).eval()
    keep_examples_apart(model, len(tokenizer))
    builder = ExampleBuilder(tokenizer, CUTOFF, train_on_inputs=False)
    examples = build_examples(DEMO_ROWS[:24], "alpaca", builder, "training")
    assert all(example["labels"][5] == IGNORE_INDEX for example in examples)  # prompts are masked
    rows = pack_examples(examples, CUTOFF)
    assert len(rows) < len(examples) / 2  # several examples per row: packing is exercised

    with torch.no_grad():
        packed = losses_packed(model, rows[:4])
        alone = {tuple(e["input_ids"]): loss_alone(model, e) for e in examples}

    assert len(packed) > 4
    for input_ids, loss in packed:
        assert loss == pytest.approx(alone[tuple(input_ids)], abs=1e-5)


def test_a_model_that_would_let_packed_examples_see_each_other_is_refused(tiny):
    folder, tokenizer = tiny
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).train()
    # With a KV cache (the config's default, even in training) masking_utils ignores the position ids.
    assert model.config.use_cache
    with pytest.raises(TrainingFailure, match="packing is not supported by this model"):
        check_examples_stay_apart(model, len(tokenizer))

    keep_examples_apart(model, len(tokenizer))
    assert not model.config.use_cache
    assert model.training  # left in the mode it was in
