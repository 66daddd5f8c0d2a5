"""Preference training (JobSpec.objective 'dpo' or 'orpo') through TRL's DPOTrainer and ORPOTrainer.

The spec maps onto DPOConfig/ORPOConfig as the SFT path maps onto TrainingArguments (both extend
it), and the trainers get ThroughputTrainer's token counting as a mixin, so the reporting callback,
checkpoints, stop and resume are the same as for SFT. Rows become TRL's own preference rows:
texts as they are, messages as TRL's conversational rows rendered by the tokenizer's chat template,
or, for a tokenizer without one, as the 'role: content' lines that worker/data.py trains SFT on."""

import copy
from pathlib import Path

from datasets import Dataset
from peft import PeftModel
from trl import DPOConfig, DPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from jobspec.dataset_rows import preference_pair
from jobspec.model import JobSpec
from worker.data import read_rows, split_rows
from worker.errors import BadDataset
from worker.model import lora_config
from worker.throughput import ThroughputTrainer


class DPOThroughputTrainer(ThroughputTrainer, DPOTrainer):
    """TRL's DPOTrainer, its training batches' tokens counted as for SFT. TRL 1.x dropped
    max_prompt_length: each tokenized prompt is cut to its last tokens here, before TRL
    precomputes any reference log-probs from them."""

    def __init__(self, *args, max_prompt_length: int | None = None, **kwargs):
        self.max_prompt_length = max_prompt_length
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if self.max_prompt_length is None:
            return dataset
        keep = self.max_prompt_length
        return dataset.map(lambda example: {"prompt_ids": example["prompt_ids"][-keep:]})

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL's num_tokens counts this attempt's tokens only (a resume restarts it at 0); the Trainer's
        # num_input_tokens_seen, the same count kept in checkpoints, stays.
        for metrics in self._metrics.values():
            metrics.pop("num_tokens", None)
        super().log(logs, start_time)


class ORPOThroughputTrainer(ThroughputTrainer, ORPOTrainer):
    """TRL's ORPOTrainer, its training batches' tokens counted as for SFT."""


def _answer(messages: list[dict]) -> list[dict]:
    return [{"role": "assistant", "content": messages[0]["content"]}]


def trl_row(row: dict, fmt: str, tokenizer) -> dict:
    """One uploaded preference row as TRL's {prompt, chosen, rejected}."""
    prompt, chosen, rejected = preference_pair(row, fmt)
    if isinstance(prompt, str):
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    prompt = [{"role": message["role"], "content": message["content"]} for message in prompt]
    if getattr(tokenizer, "chat_template", None):
        return {"prompt": prompt, "chosen": _answer(chosen), "rejected": _answer(rejected)}
    lines = "".join(f"{message['role']}: {message['content']}\n" for message in prompt)
    return {"prompt": lines + "assistant: ", "chosen": chosen[0]["content"], "rejected": rejected[0]["content"]}


def preference_datasets(
    path: Path, fmt: str, tokenizer, val_set_size: float, seed: int, eval_source: tuple[Path, str] | None = None,
) -> tuple[Dataset, Dataset | None]:
    """(training pairs, evaluation pairs or None), split as worker/data.py splits SFT rows."""
    train_rows, eval_rows = split_rows(read_rows(path, fmt), val_set_size, seed)
    eval_fmt = fmt
    if eval_source is not None:
        eval_rows, eval_fmt = read_rows(*eval_source), eval_source[1]
    if not train_rows:
        raise BadDataset("no preference pair is left for training")
    train = Dataset.from_list([trl_row(row, fmt, tokenizer) for row in train_rows])
    evaluation = Dataset.from_list([trl_row(row, eval_fmt, tokenizer) for row in eval_rows]) if eval_rows else None
    return train, evaluation


def preference_arguments(spec: JobSpec, kwargs: dict):
    """DPOConfig or ORPOConfig from the TrainingArguments keyword arguments of the spec."""
    kwargs = dict(kwargs)
    # TRL's configs default gradient checkpointing on and bf16 on: the spec decides both.
    kwargs["gradient_checkpointing"] = kwargs.pop("activation_checkpointing")
    preference = spec.preference
    if spec.objective == "orpo":
        return ORPOConfig(**kwargs, beta=preference.beta, max_length=spec.data.cutoff_len)
    return DPOConfig(
        **kwargs, beta=preference.beta, loss_type=[preference.loss_type], max_length=spec.data.cutoff_len,
        precompute_ref_log_probs=preference.reference == "precomputed",
    )


def build_preference_trainer(spec: JobSpec, model, args, train_set: Dataset, eval_set: Dataset | None, tokenizer,
                             callback) -> ThroughputTrainer:
    """A new LoRA adapter is TRL's to add (peft_config), so that DPO's reference is the base with the
    adapter disabled; an earlier job's adapter (a PeftModel) is copied by TRL as the reference; full
    fine-tuning gets a frozen copy of the weights in memory, or precomputed log-probs."""
    peft_config = lora_config(spec) if spec.method != "full" and not isinstance(model, PeftModel) else None
    common = dict(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set, processing_class=tokenizer,
                  callbacks=[callback], peft_config=peft_config)
    if spec.objective == "orpo":
        return ORPOThroughputTrainer(**common)
    reference = None
    if spec.method == "full" and spec.preference.reference == "model":
        # TRL would load the reference again from the model's name; the weights in memory are the ones to copy.
        reference = _frozen_copy(model)
    return DPOThroughputTrainer(**common, ref_model=reference, max_prompt_length=spec.preference.max_prompt_length)


def _frozen_copy(model):
    reference = copy.deepcopy(model)
    reference.requires_grad_(False)
    return reference.eval()
