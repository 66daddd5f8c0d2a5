"""Length-grouped batches a resume can draw again: the order depends on seed and epoch only."""

import random

import torch

from worker.throughput import EpochSeededLengthGroupedSampler


def test_an_epochs_order_depends_on_seed_and_epoch_not_on_the_global_rng():
    rng = random.Random(0)
    lengths = [rng.randint(1, 500) for _ in range(200)]
    sampler = EpochSeededLengthGroupedSampler(8, lengths, seed=42)
    sampler.set_epoch(3)
    first = list(sampler)
    torch.manual_seed(1234)  # a resumed process's global RNG is elsewhere when the epoch starts
    again = EpochSeededLengthGroupedSampler(8, lengths, seed=42)
    again.set_epoch(3)

    assert list(again) == first
    assert sorted(first) == list(range(200))
    sampler.set_epoch(4)
    assert list(sampler) != first


def test_batches_hold_similar_lengths():
    rng = random.Random(1)
    lengths = [rng.randint(1, 500) for _ in range(400)]
    sampler = EpochSeededLengthGroupedSampler(8, lengths, seed=0)
    order = list(sampler)
    padded = sum(8 * max(lengths[i] for i in order[k:k + 8]) for k in range(0, 400, 8))
    shuffled = random.Random(2).sample(range(400), 400)
    padded_at_random = sum(8 * max(lengths[i] for i in shuffled[k:k + 8]) for k in range(0, 400, 8))
    assert sum(lengths) / padded > 0.8 > 0.7 > sum(lengths) / padded_at_random
