"""What the GPU time buys: real (non-padding) tokens and processed tokens (padding included) of the
training batches, counted where the batch meets the model, and the padding efficiency from them."""

from transformers import Trainer

from worker.packing import REAL_TOKENS


class TokenCounts:
    def __init__(self) -> None:
        self.real = 0
        self.processed = 0

    def add(self, inputs: dict) -> None:
        real = inputs.pop(REAL_TOKENS, None)
        if real is None:
            real = inputs["attention_mask"].sum() if "attention_mask" in inputs else inputs["input_ids"].numel()
        self.real += int(real)
        self.processed += inputs["input_ids"].numel()

    @property
    def efficiency(self) -> float | None:
        return self.real / self.processed if self.processed else None


class TokenCountingTrainer(Trainer):
    """Counts the training batches' tokens (on this process, for this attempt); evaluation batches
    pass through uncounted. The packed collator's real-token count never reaches the model."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_counts = TokenCounts()

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            self.token_counts.add(inputs)
        else:
            inputs.pop(REAL_TOKENS, None)
        return super().compute_loss(model, inputs, *args, **kwargs)
