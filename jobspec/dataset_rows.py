"""The dataset formats a JSONL upload may use, and the check of one row. Shared by the API
(checks every line at upload) and the worker (reads the same rows)."""

from typing import Any, Literal

DatasetFormat = Literal["alpaca", "chat", "text"]
CHAT_ROLES = ("system", "user", "assistant")


class RowError(ValueError):
    """A row that is not one of the formats; the message says why."""


def _require_string(row: dict[str, Any], key: str, *, allow_empty: bool = False) -> None:
    value = row.get(key)
    if not isinstance(value, str):
        raise RowError(f"'{key}' must be a string")
    if not allow_empty and not value.strip():
        raise RowError(f"'{key}' must not be empty")


def _check_chat(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise RowError("'messages' must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RowError(f"messages[{index}] must be an object with role and content")
        if message.get("role") not in CHAT_ROLES:
            raise RowError(f"messages[{index}].role must be one of {', '.join(CHAT_ROLES)}")
        if not isinstance(message.get("content"), str):
            raise RowError(f"messages[{index}].content must be a string")
    if not any(message["role"] == "assistant" for message in messages):
        raise RowError("'messages' needs at least one assistant message to learn from")


def row_format(row: Any) -> DatasetFormat:
    """The format of one parsed JSON row, or RowError with the reason."""
    if not isinstance(row, dict):
        raise RowError("each line must be a JSON object")
    if "messages" in row:
        _check_chat(row["messages"])
        return "chat"
    if "instruction" in row:
        _require_string(row, "instruction")
        _require_string(row, "output", allow_empty=True)
        if "input" in row and row["input"] is not None:
            _require_string(row, "input", allow_empty=True)
        return "alpaca"
    if "text" in row:
        _require_string(row, "text")
        return "text"
    raise RowError(
        "expected an alpaca row (instruction, input, output), a chat row (messages with role and "
        "content) or a text row (text)"
    )
