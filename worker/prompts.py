"""Generation prompts built the way the job built its training examples (worker/data.py): the
same Alpaca template, chat template or plain chat lines, and special tokens, so the model sees at
inference what it was trained on. A base model (no job) is prompted as a chat model: its chat
template, else the plain chat lines training uses without one.

A prompt is chat messages (`/v1/chat/completions`, a sample prompt given as messages) or a text
(`/v1/completions`, a sample prompt given as a string)."""

from typing import Any

from worker.data import ALPACA_PROMPT, ALPACA_PROMPT_WITH_INPUT, ExampleBuilder, assistant_text
from jobspec.dataset_rows import chat_messages

Prompt = str | list[dict[str, Any]]


def prompt_ids(tokenizer, fmt: str | None, prompt: Prompt, *, alpaca_input: str | None = None) -> list[int]:
    """The token ids to generate from. `fmt`: the data format the model was trained on (alpaca,
    chat, sharegpt, text), None for a base model."""
    builder = ExampleBuilder(tokenizer, cutoff_len=2**31 - 1, train_on_inputs=True)
    if fmt == "alpaca":
        instruction = prompt if isinstance(prompt, str) else _last_user_text(prompt)
        template = ALPACA_PROMPT_WITH_INPUT if alpaca_input else ALPACA_PROMPT
        segments = [(builder.prefix, False), (template.format(instruction=instruction, input=alpaca_input), False)]
    elif isinstance(prompt, str) and fmt in ("text", None):
        segments = [(builder.prefix, False), (prompt, False)]
    else:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        segments = _chat_segments(builder, messages)
    ids: list[int] = []
    for piece, _ in segments:
        ids += piece if isinstance(piece, list) else tokenizer.encode(piece, add_special_tokens=False)
    return ids


def _chat_segments(builder: ExampleBuilder, messages: list[dict[str, Any]]):
    tokenizer = builder.tokenizer
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
        return [(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False)]
    segments = [(builder.prefix, False)]
    for message in messages:
        content = assistant_text(message) if message["role"] == "assistant" else message.get("content") or ""
        if message["role"] == "assistant":
            segments += [("assistant: ", False), (content, False), (builder.eos, False)]
        else:
            segments.append((f"{message['role']}: {content}\n", False))
    segments.append(("assistant: ", False))
    return segments


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message.get("content") or ""
    return ""


def row_prompt(row: dict[str, Any], fmt: str) -> tuple[Prompt, str | None, str | None] | None:
    """A validation row as (prompt, alpaca input, reference answer): the row up to its last
    response, and that response. None for a row with nothing to answer (text rows, or chats
    without an assistant turn after a user turn)."""
    if fmt == "alpaca":
        return row["instruction"], row.get("input") or None, row["output"]
    if fmt not in ("chat", "sharegpt"):
        return None
    messages = chat_messages(row, fmt)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if not last:
        return None
    return messages[:last], None, assistant_text(messages[last])
