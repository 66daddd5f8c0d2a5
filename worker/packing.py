"""Packing: several examples in one sequence of up to cutoff_len tokens, kept apart.

A packed row carries position ids that restart at 0 for every example. With no attention mask in
the batch, transformers' masking_utils reads those restarts as sequence boundaries and builds a
block-diagonal causal mask (eager, sdpa, flex), and the flash-attention paths turn them into
variable-length sequences: no token attends across an example boundary, and RoPE sees each
example at the positions it would have alone. The first label of every example is -100, so no
token is trained to predict the next example's first token; the loss of each example is the one
it has unpacked. `check_examples_stay_apart` proves this on the job's own model before training."""

import bisect

import torch

from worker.data import IGNORE_INDEX
from worker.errors import TrainingFailure

# Key of a batch's real (non-padding) token count; ThroughputTrainer removes it before the model.
REAL_TOKENS = "num_real_tokens"


def pack_examples(examples: list[dict[str, list[int]]], capacity: int) -> list[dict[str, list[int]]]:
    """Best-fit decreasing: longest examples first, each into the fullest row it fits, so rows come
    out nearly full. Deterministic (ties keep the examples' order), so every attempt of a job packs
    the same rows and a resume skips the same batches."""
    order = sorted(range(len(examples)), key=lambda index: -len(examples[index]["input_ids"]))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, row index), sorted
    for index in order:
        length = len(examples[index]["input_ids"])
        at = bisect.bisect_left(free, (length, -1))
        if at == len(free):
            rows.append([index])
            bisect.insort(free, (capacity - length, len(rows) - 1))
            continue
        room, row = free.pop(at)
        rows[row].append(index)
        bisect.insort(free, (room - length, row))
    return [concatenate([examples[index] for index in row]) for row in rows]


def concatenate(examples: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    input_ids: list[int] = []
    labels: list[int] = []
    position_ids: list[int] = []
    for example in examples:
        input_ids += example["input_ids"]
        labels += [IGNORE_INDEX] + example["labels"][1:]
        position_ids += range(len(example["input_ids"]))
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


class PackedCollator:
    """Right-pads packed rows (and plain examples, such as evaluation ones: a row of one) to the
    batch's longest, without an attention mask: causal attention never lets a real token see the
    padding after it, and the padding gets its own position ids, so it is a separate sequence."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(feature["input_ids"]) for feature in features)
        input_ids, labels, position_ids = [], [], []
        for feature in features:
            size = len(feature["input_ids"])
            padding = length - size
            input_ids.append(feature["input_ids"] + [self.pad_token_id] * padding)
            labels.append(feature["labels"] + [IGNORE_INDEX] * padding)
            positions = feature.get("position_ids") or list(range(size))
            position_ids.append(list(positions) + list(range(padding)))
        return {
            "input_ids": torch.tensor(input_ids),
            "labels": torch.tensor(labels),
            "position_ids": torch.tensor(position_ids),
            REAL_TOKENS: torch.tensor(sum(len(feature["input_ids"]) for feature in features)),
        }


def keep_examples_apart(model, vocab_size: int) -> None:
    """Readies the model for packed batches, or refuses the job. masking_utils reads position ids as
    boundaries only without a KV cache, and a model whose config says use_cache builds one even in
    training (transformers 5.24): every packed example would then attend to the ones before it."""
    model.config.use_cache = False
    check_examples_stay_apart(model, vocab_size)


def check_examples_stay_apart(model, vocab_size: int) -> None:
    """Changes the first of two packed examples and checks that the second one's logits do not
    move. Refuses the job when they do: the model's attention ignores the position-id boundaries
    (custom attention code, an implementation masking_utils does not serve), and packing would
    silently let examples attend to each other."""
    first = torch.arange(3, 11) % vocab_size
    other_first = (first + 7) % vocab_size
    second = torch.arange(20, 28) % vocab_size
    positions = torch.cat([torch.arange(8), torch.arange(8)]).unsqueeze(0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = [
                model(input_ids=torch.cat([head, second]).unsqueeze(0).to(device),
                      position_ids=positions.to(device)).logits[0, 8:].float()
                for head in (first, other_first)
            ]
    finally:
        model.train(was_training)
    scale = logits[0].abs().max().item() + 1.0
    if (logits[0] - logits[1]).abs().max().item() > 1e-3 * scale:
        raise TrainingFailure(
            "data.packing is not supported by this model: its attention lets packed examples see "
            "each other (it ignores the per-example position ids); set packing to false, or use "
            "group_by_length"
        )
