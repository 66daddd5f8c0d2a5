"""Sample generations and generation metrics while a job trains (the spec's `evaluation` section).

At each evaluation (ThroughputTrainer.evaluation_loop) and at the end of training, the training
process generates greedily (do_sample false, at most max_new_tokens, eos stops) for:
- the validation rows: the first max(samples_from_validation, generation_max_rows when metrics are
  asked) rows of the evaluation set that have a reference answer, in split order;
- the sample prompts.
Prompts are built as training built its examples (worker/prompts.py). The first
samples_from_validation rows and every sample prompt are stored (db/samples.py, through the
Reporter) with the `samples.generated` event; the generation metrics are computed on the first
generation_max_rows rows and returned for the Trainer to log as eval_<name>.

Generation never disturbs training: no gradients, the model in eval mode (its mode restored
after), greedy decoding draws no random numbers. A round is bounded by max_generation_s: batches
not begun by then are skipped (validation rows go first, so the metrics always have at least one
batch), and its time is reported as eval_generation_seconds."""

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig

from jobspec.model import EvaluationSpec
from worker.data import read_rows, split_rows
from worker.errors import BadDataset
from worker.prompts import prompt_ids, row_prompt
from worker.reporting import Reporter


def exact_match(outputs: list[str], references: list[str]) -> float:
    """Share of outputs equal to their reference, surrounding whitespace aside."""
    return sum(o.strip() == r.strip() for o, r in zip(outputs, references)) / len(outputs)


def rouge_l(outputs: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (rouge-score, no stemming; its tokenizer keeps lowercase ASCII letters and digits)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return sum(scorer.score(r, o)["rougeL"].fmeasure for o, r in zip(outputs, references)) / len(outputs)


def bleu(outputs: list[str], references: list[str]) -> float:
    """sacrebleu's corpus BLEU (0-100, its default 13a tokenization)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(outputs, [references]).score)


METRICS = {"exact_match": exact_match, "rouge_l": rouge_l, "bleu": bleu}


def generation_metrics(names: list[str], outputs: list[str], references: list[str]) -> dict[str, float]:
    if not outputs:
        return {}
    return {name: METRICS[name](outputs, references) for name in dict.fromkeys(names)}


def evaluation_rows(
    dataset_path: Path, fmt: str, val_set_size: float, seed: int, eval_source: tuple[Path, str] | None,
) -> tuple[list[dict], str]:
    """(the raw evaluation rows, their format): the same rows, in the same order, as
    worker/data.py build_datasets evaluates on."""
    if eval_source is not None:
        return read_rows(*eval_source), eval_source[1]
    return split_rows(read_rows(dataset_path, fmt), val_set_size, seed)[1], fmt


class SampleGenerator:
    def __init__(
        self, evaluation: EvaluationSpec, tokenizer, fmt: str, rows: list[dict], rows_format: str,
        *, cutoff_len: int, batch_size: int, reporter: Reporter | None,
    ):
        self.spec = evaluation
        self.tokenizer = tokenizer
        self.cutoff_len = cutoff_len
        self.batch_size = batch_size
        self.reporter = reporter
        self.steps_done: set[int] = set()
        self.last_summary: dict[str, Any] | None = None
        wanted = max(evaluation.samples_from_validation,
                     evaluation.generation_max_rows if evaluation.generation_metrics else 0)
        # (stored prompt, token ids, reference)
        self.validation: list[tuple[Any, list[int], str]] = []
        for row in rows:
            if len(self.validation) >= wanted:
                break
            found = row_prompt(row, rows_format)
            if found is None:
                continue
            prompt, alpaca_input, reference = found
            ids = prompt_ids(tokenizer, fmt, prompt, alpaca_input=alpaca_input)
            shown = f"{prompt}\n\n{alpaca_input}" if alpaca_input else prompt
            self.validation.append((shown, ids, reference))
        if wanted and not self.validation:
            raise BadDataset(
                f"evaluation.generation_metrics and samples_from_validation need validation rows with a "
                f"reference answer (alpaca, chat or sharegpt rows ending in an assistant turn); the "
                f"evaluation set's {rows_format} rows have none"
            )
        self.prompts = [
            (prompt, prompt_ids(tokenizer, fmt, prompt)) for prompt in
            (p if isinstance(p, str) else [m.model_dump() for m in p] for p in evaluation.sample_prompts)
        ]

    def run(self, model, step: int, *, autocast=nullcontext, final: bool = False) -> dict[str, float]:
        """One round at `step`: generates, stores the samples and the event, and returns the
        metrics ({name: value}, eval_ prefix not included; generation_seconds among them). `final`:
        the end-of-training round (not an evaluation)."""
        started = time.monotonic()
        deadline = started + self.spec.max_generation_s
        # Validation rows first: the metrics (which may pick the best checkpoint) always get a batch.
        jobs = [ids for _, ids, _ in self.validation] + [ids for _, ids in self.prompts]
        outputs: list[str | None] = [None] * len(jobs)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), autocast():
                for start in range(0, len(jobs), self.batch_size):
                    if start and time.monotonic() >= deadline:
                        break
                    batch = jobs[start:start + self.batch_size]
                    outputs[start:start + len(batch)] = self.generate(model, batch, deadline)
        finally:
            model.train(was_training)
        seconds = time.monotonic() - started
        val_out, prompt_out = outputs[:len(self.validation)], outputs[len(self.validation):]
        metric_rows = [(out, ref) for out, (_, _, ref) in
                       zip(val_out[:self.spec.generation_max_rows], self.validation) if out is not None]
        metrics = generation_metrics(self.spec.generation_metrics, [o for o, _ in metric_rows],
                                     [r for _, r in metric_rows])
        samples = [
            {"prompt_index": index, "source": "prompt", "prompt": prompt, "output": out, "reference": None}
            for index, ((prompt, _), out) in enumerate(zip(self.prompts, prompt_out)) if out is not None
        ] + [
            {"prompt_index": len(self.prompts) + index, "source": "validation", "prompt": prompt, "output": out,
             "reference": reference}
            for index, ((prompt, _, reference), out) in
            enumerate(zip(self.validation[:self.spec.samples_from_validation], val_out)) if out is not None
        ]
        summary = {"seconds": round(seconds, 3), "final": final, "generated": sum(out is not None for out in outputs),
                   "skipped": sum(out is None for out in outputs), "metric_rows": len(metric_rows),
                   "metrics": metrics}
        self.last_summary = summary
        self.steps_done.add(step)
        metrics = {**metrics, "generation_seconds": seconds}
        if self.reporter is not None:
            self.reporter.samples(step, samples, summary)
        return metrics

    def generate(self, model, batch: list[list[int]], deadline: float) -> list[str]:
        """Greedy continuations of a batch of prompts, left-padded."""
        tokenizer = self.tokenizer
        batch = [ids[-self.cutoff_len:] for ids in batch]  # the longest context training used
        eos = self.eos_ids(model)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        length = max(len(ids) for ids in batch)
        device = next(model.parameters()).device
        input_ids = torch.tensor([[pad] * (length - len(ids)) + ids for ids in batch], device=device)
        attention_mask = torch.tensor([[0] * (length - len(ids)) + [1] * len(ids) for ids in batch], device=device)
        config = GenerationConfig(
            do_sample=False, max_new_tokens=self.spec.max_new_tokens, eos_token_id=eos, pad_token_id=pad,
            use_cache=True, max_time=max(deadline - time.monotonic(), 0.001),
        )
        generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
        texts = []
        for row in generated[:, length:].tolist():
            end = next((i for i, token in enumerate(row) if token in eos), len(row))
            texts.append(tokenizer.decode(row[:end], skip_special_tokens=True))
        return texts

    def eos_ids(self, model) -> list[int]:
        """The tokenizer's eos (which ends training examples) and the model's generation eos ids
        (a chat template's end-of-turn token)."""
        ids = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids += configured if isinstance(configured, list) else [configured] if configured is not None else []
        return list(dict.fromkeys(ids)) or [0]
