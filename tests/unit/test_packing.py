"""Packing rows: every example once, rows within cutoff_len, boundaries in labels and positions."""

import random

import torch

from worker.data import IGNORE_INDEX
from worker.packing import REAL_TOKENS, PackedCollator, pack_examples


def example(length: int, start: int, prompt: int = 0) -> dict[str, list[int]]:
    ids = list(range(start, start + length))
    return {"input_ids": ids, "attention_mask": [1] * length,
            "labels": [IGNORE_INDEX] * prompt + ids[prompt:]}


def split_rows(row: dict) -> list[tuple[list[int], list[int]]]:
    """The (input_ids, labels) of each example of a packed row, cut where the positions restart."""
    starts = [i for i, position in enumerate(row["position_ids"]) if position == 0] + [len(row["input_ids"])]
    return [(row["input_ids"][a:b], row["labels"][a:b]) for a, b in zip(starts, starts[1:])]


def test_every_example_lands_once_in_a_row_within_capacity_with_its_labels():
    rng = random.Random(0)
    examples = [example(rng.randint(2, 64), start=1000 * i, prompt=rng.randint(0, 1)) for i in range(200)]
    rows = pack_examples(examples, capacity=64)

    assert all(len(row["input_ids"]) <= 64 for row in rows)
    found = sorted(part for row in rows for part in split_rows(row))
    expected = sorted((e["input_ids"], [IGNORE_INDEX] + e["labels"][1:]) for e in examples)
    assert found == expected  # first label of each example ignored, prompt masking kept
    assert all(row["position_ids"] == [p for ids, _ in split_rows(row) for p in range(len(ids))] for row in rows)
    assert pack_examples(examples, capacity=64) == rows  # deterministic: every attempt packs alike


def test_skewed_lengths_pack_nearly_full():
    rng = random.Random(1)
    lengths = [int(10 * (512 / 10) ** rng.random()) for _ in range(2000)]
    rows = pack_examples([example(n, 0) for n in lengths], capacity=512)
    assert sum(lengths) / (512 * len(rows)) > 0.97


def test_collator_pads_rows_and_plain_examples_without_an_attention_mask():
    packed = pack_examples([example(3, 10), example(2, 20)], capacity=8)[0]
    batch = PackedCollator(pad_token_id=0)([packed, example(2, 30)])

    assert "attention_mask" not in batch  # masking_utils then reads the position ids as boundaries
    assert batch["input_ids"].tolist() == [[10, 11, 12, 20, 21], [30, 31, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 11, 12, IGNORE_INDEX, 21], [30, 31] + [IGNORE_INDEX] * 3]
    assert batch[REAL_TOKENS] == torch.tensor(7)
