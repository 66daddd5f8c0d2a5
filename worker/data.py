"""An uploaded JSONL dataset as tokenized training and evaluation examples.

Every example is a list of segments (text or token ids), each either part of the prompt or of
the response. Segments are tokenized one by one, so the boundary between prompt and response is
exact: with train_on_inputs false, prompt tokens get label -100 (ignored by the loss)."""

import json
import random
import sys
from pathlib import Path
from typing import Any

import torch

from jobspec.dataset_rows import FORMATS, RowError, chat_messages, learned, row_format
from jobspec.estimate import split_sizes
from jobspec.model import DataSpec
from worker.errors import BadDataset

IGNORE_INDEX = -100

# The Stanford Alpaca prompt templates.
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

# (text or token ids, learned): True a response the loss learns, False a prompt (learned only with
# train_on_inputs), None never learned (an assistant message of weight 0).
Segment = tuple[str | list[int], bool | None]


def read_rows(path: Path, fmt: str) -> list[dict[str, Any]]:
    """The rows of a JSONL file, each checked to be a row of `fmt`; blank lines are skipped."""
    if fmt not in FORMATS:
        raise BadDataset(f"unknown dataset format '{fmt}'")
    rows = []
    try:
        with open(path, "rb") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    rows.append(_parse_row(line, number, fmt))
    except FileNotFoundError:
        raise BadDataset(f"the dataset file {path} is missing; upload the dataset again") from None
    except OSError as exc:
        raise BadDataset(f"the dataset file {path} cannot be read: {exc}") from exc
    if not rows:
        raise BadDataset(f"the dataset file {path} has no rows")
    return rows


def _parse_row(line: bytes, number: int, fmt: str) -> dict[str, Any]:
    try:
        row = json.loads(line.decode("utf-8"))
        found = row_format(row)
    except UnicodeDecodeError as exc:
        raise BadDataset(f"line {number} is not valid UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadDataset(f"line {number} is not valid JSON: {exc}") from None
    except RowError as exc:
        raise BadDataset(f"line {number}: {exc}") from None
    if found != fmt:
        raise BadDataset(f"line {number} has the {found} format, but the job reads the dataset as {fmt}")
    return row


def split_rows(rows: list[dict], val_set_size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows: the eval rows are drawn by a shuffle seeded with the job's seed."""
    try:
        _, eval_size = split_sizes(len(rows), val_set_size)
    except ValueError as exc:
        raise BadDataset(str(exc)) from None
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:eval_size])
    train = [row for index, row in enumerate(rows) if index not in held_out]
    return train, [rows[index] for index in sorted(held_out)]


class ExampleBuilder:
    """Turns rows into {input_ids, attention_mask, labels} with one tokenizer and DataSpec."""

    def __init__(self, tokenizer, cutoff_len: int, train_on_inputs: bool):
        self.tokenizer = tokenizer
        self.cutoff_len = cutoff_len
        self.train_on_inputs = train_on_inputs
        self.prefix = _special_prefix(tokenizer)
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.warned_template = False

    def segments(self, row: dict[str, Any], fmt: str) -> list[Segment]:
        if fmt == "alpaca":
            template = ALPACA_PROMPT_WITH_INPUT if row.get("input") else ALPACA_PROMPT
            prompt = template.format(instruction=row["instruction"], input=row.get("input"))
            return [(self.prefix, False), (prompt, False), (row["output"], True), (self.eos, True)]
        if fmt == "text":
            return [(self.prefix, True), (row["text"], True), (self.eos, True)]
        messages = chat_messages(row, fmt)
        if getattr(self.tokenizer, "chat_template", None):
            return self.chat_template_segments(messages)
        return self.plain_chat_segments(messages)

    def plain_chat_segments(self, messages: list[dict]) -> list[Segment]:
        """'<role>: content' lines; an assistant turn (its tool calls as <tool_call> JSON) ends with
        eos instead of a newline."""
        segments: list[Segment] = [(self.prefix, False)]
        for message in messages:
            if message["role"] == "assistant":
                learn = True if learned(message) else None
                segments += [("assistant: ", False), (assistant_text(message), learn), (self.eos, learn)]
            else:
                segments.append((f"{message['role']}: {message['content']}\n", False))
        return segments

    def chat_template_segments(self, messages: list[dict]) -> list[Segment]:
        """Cut the rendered conversation where each message starts and ends (and where an assistant
        turn's header ends) by rendering its prefixes."""
        render = self.tokenizer.apply_chat_template
        weights = [True if learned(message) else None if message["role"] == "assistant" else False
                   for message in messages]
        # Templates concatenate content; a tool-calling turn has none. `weight` is not theirs to see.
        messages = [{key: value for key, value in {**message, "content": message.get("content") or ""}.items()
                     if key != "weight"} for message in messages]
        segments: list[Segment] = []
        done = ""
        for index, message in enumerate(messages):
            is_response = message["role"] == "assistant"
            cuts = []
            if is_response and index > 0:  # templates refuse an empty conversation
                cuts.append((render(messages[:index], tokenize=False, add_generation_prompt=True), False))
            cuts.append((render(messages[: index + 1], tokenize=False), weights[index]))
            for text, trainable in cuts:
                if not text.startswith(done):
                    return self._whole_conversation(messages)
                segments.append((text[len(done):], trainable))
                done = text
        return segments

    def _whole_conversation(self, messages: list[dict]) -> list[Segment]:
        if not self.warned_template:
            print("the chat template does not render conversations prefix by prefix: "
                  "training on whole conversations, train_on_inputs is ignored", file=sys.stderr)
            self.warned_template = True
        return [(self.tokenizer.apply_chat_template(messages, tokenize=False), True)]

    def build(self, row: dict[str, Any], fmt: str) -> dict[str, list[int]] | None:
        """The example, or None when truncation left no response token to learn from."""
        input_ids: list[int] = []
        labels: list[int] = []
        for piece, trainable in self.segments(row, fmt):
            ids = piece if isinstance(piece, list) else self.tokenizer.encode(piece, add_special_tokens=False)
            input_ids += ids
            learn = trainable or (self.train_on_inputs and trainable is not None)
            labels += ids if learn else [IGNORE_INDEX] * len(ids)
        input_ids, labels = input_ids[: self.cutoff_len], labels[: self.cutoff_len]
        # The first token is never predicted, so its label alone teaches nothing.
        if all(label == IGNORE_INDEX for label in labels[1:]):
            return None
        return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def assistant_text(message: dict[str, Any]) -> str:
    """An assistant message's content followed by its tool calls, each as <tool_call>JSON</tool_call>
    (the convention of Hermes/Qwen-style templates)."""
    calls = "".join(
        "<tool_call>" + json.dumps({"name": call["function"]["name"], "arguments": call["function"].get("arguments", "")},
                                   ensure_ascii=False) + "</tool_call>"
        for call in message.get("tool_calls") or ()
    )
    return (message.get("content") or "") + calls


def _special_prefix(tokenizer) -> list[int]:
    """The token ids the tokenizer puts before a text (e.g. bos), found by encoding one with and
    without special tokens."""
    plain = tokenizer.encode("x", add_special_tokens=False)
    full = tokenizer.encode("x", add_special_tokens=True)
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start]
    return []


def build_examples(rows: list[dict], fmt: str, builder: ExampleBuilder, split: str) -> list[dict]:
    examples = [example for row in rows if (example := builder.build(row, fmt)) is not None]
    if not examples:
        raise BadDataset(
            f"no {split} example has a response token left after truncation to cutoff_len "
            f"{builder.cutoff_len}: raise cutoff_len or set train_on_inputs to true"
        )
    return examples


def build_datasets(
    path: Path, fmt: str, tokenizer, data: DataSpec, seed: int, *, eval_source: tuple[Path, str] | None = None,
) -> tuple[list[dict], list[dict] | None]:
    """(train examples, eval examples or None when there is no evaluation set). The evaluation
    set is `eval_source` (a validation dataset's file and format) when given, else the split of
    val_set_size."""
    train_rows, eval_rows = split_rows(read_rows(path, fmt), data.val_set_size, seed)
    if eval_source is not None:
        eval_rows = read_rows(*eval_source)
    builder = ExampleBuilder(tokenizer, data.cutoff_len, data.train_on_inputs)
    train = build_examples(train_rows, fmt, builder, "training")
    eval_fmt = eval_source[1] if eval_source is not None else fmt
    evaluation = build_examples(eval_rows, eval_fmt, builder, "evaluation") if eval_rows else None
    return train, evaluation


class PaddingCollator:
    """Pads a batch on the right: input_ids with the pad token, attention_mask with 0, labels with
    -100 (so padding never counts in the loss)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(feature["input_ids"]) for feature in features)
        fills = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        return {
            key: torch.tensor([feature[key] + [fill] * (length - len(feature[key])) for feature in features])
            for key, fill in fills.items()
        }
