"""What the GPU time buys: real (non-padding) tokens and processed tokens (padding included) of the
training batches, counted where the batch meets the model, and the padding efficiency from them;
and length-grouped batches that a resume draws again in the same order."""

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from worker.packing import REAL_TOKENS


class TokenCounts:
    def __init__(self) -> None:
        self.real = 0
        self.processed = 0

    def add(self, inputs: dict) -> None:
        real = inputs.pop(REAL_TOKENS, None)
        # ORPO's batches hold the chosen and the rejected sequences apart; others one input_ids.
        prefixes = [prefix for prefix in ("", "chosen_", "rejected_") if f"{prefix}input_ids" in inputs]
        if real is None:
            real = sum(inputs[f"{p}attention_mask"].sum() if f"{p}attention_mask" in inputs
                       else inputs[f"{p}input_ids"].numel() for p in prefixes)
        self.real += int(real)
        self.processed += sum(inputs[f"{p}input_ids"].numel() for p in prefixes)

    @property
    def efficiency(self) -> float | None:
        return self.real / self.processed if self.processed else None


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' LengthGroupedSampler draws its groups from the global RNG, whose state when an
    epoch starts differs between a run and its resume (the resume restores it only after the
    skipped batches). Seeded with seed + epoch instead, as accelerate seeds the random sampler, a
    resumed epoch draws the same groups. The Trainer calls set_epoch before each epoch."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class ThroughputTrainer(Trainer):
    """Counts the training batches' tokens (on this process, for this attempt); evaluation batches
    pass through uncounted. The packed collator's real-token count never reaches the model.
    Length-grouped training batches come from EpochSeededLengthGroupedSampler."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_counts = TokenCounts()
        # worker/samples.py: sample generations and generation metrics (the spec's evaluation section)
        self.sample_generator = None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """The Trainer's evaluation, then a generation round whose metrics join it (eval_rouge_l,
        ...): logged with eval_loss, and there for metric_for_best_model."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.sample_generator is not None and metric_key_prefix == "eval":
            metrics = self.sample_generator.run(self.model, self.state.global_step,
                                                autocast=self.autocast_smart_context_manager)
            output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in metrics.items()})
        return output

    def _finalize_training(self, *args, **kwargs):
        """Training is complete: a last generation round, unless the last step's evaluation had
        one, before load_best_model_at_end replaces the model."""
        generator = self.sample_generator
        state = self.state
        if generator is not None and state.global_step >= state.max_steps and state.global_step not in generator.steps_done:
            # Not an evaluation: its metrics are in the samples.generated event, not eval_* points.
            generator.run(self.model, state.global_step, autocast=self.autocast_smart_context_manager, final=True)
        return super()._finalize_training(*args, **kwargs)

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            self.token_counts.add(inputs)
        else:
            inputs.pop(REAL_TOKENS, None)
        return super().compute_loss(model, inputs, *args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler
