"""The dataset formats an upload may use, the check of one row, and chat-like rows as one list
of messages. Shared by the API (checks every row at upload) and the worker (reads the same rows)."""

from typing import Any, Literal

DatasetFormat = Literal["alpaca", "chat", "sharegpt", "text", "preference", "openai_dpo"]
# Preference pairs, for preference training (JobSpec.objective dpo or orpo): TRL's standard rows
# (prompt, chosen, rejected; texts or messages) and OpenAI's DPO rows (input.messages,
# preferred_output, non_preferred_output).
PREFERENCE_FORMATS: tuple[str, ...] = ("preference", "openai_dpo")
SFT_FORMATS: tuple[str, ...] = ("alpaca", "chat", "sharegpt", "text")
FORMATS: tuple[str, ...] = (*SFT_FORMATS, *PREFERENCE_FORMATS)
CHAT_ROLES = ("system", "user", "assistant", "tool")
# ShareGPT speakers -> chat roles (the spellings of FastChat, LLaMA-Factory and axolotl).
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "function_call": "assistant", "tool": "tool", "observation": "tool",
                  "function_response": "tool"}


class RowError(ValueError):
    """A row that is not one of the formats; the message says why."""


def _require_string(row: dict[str, Any], key: str, *, allow_empty: bool = False) -> None:
    value = row.get(key)
    if not isinstance(value, str):
        raise RowError(f"'{key}' must be a string")
    if not allow_empty and not value.strip():
        raise RowError(f"'{key}' must not be empty")


def _check_tool_calls(where: str, calls: Any) -> None:
    if not isinstance(calls, list) or not calls:
        raise RowError(f"{where}.tool_calls must be a non-empty list")
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RowError(f"{where}.tool_calls[{index}] must be {{\"type\": \"function\", \"function\": "
                           "{\"name\": ..., \"arguments\": ...}}")
        if not isinstance(function.get("arguments", ""), (str, dict)):
            raise RowError(f"{where}.tool_calls[{index}].function.arguments must be a JSON string")


def _check_chat(messages: Any) -> None:
    """OpenAI's chat fine-tuning rows: system, user, assistant and tool messages; an assistant
    message may carry tool_calls instead of content, and `weight` 0 or 1 (0: not learned)."""
    if not isinstance(messages, list) or not messages:
        raise RowError("'messages' must be a non-empty list")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise RowError(f"{where} must be an object with role and content")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise RowError(f"{where}.role must be one of {', '.join(CHAT_ROLES)}")
        if "tool_calls" in message and role == "assistant":
            _check_tool_calls(where, message["tool_calls"])
        if not isinstance(message.get("content"), str) and not (role == "assistant" and message.get("tool_calls")
                                                                 and message.get("content") is None):
            raise RowError(f"{where}.content must be a string")
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)
                                    or isinstance(message["weight"], bool)):
            raise RowError(f"{where}.weight must be 0 or 1, on assistant messages only")
    if not any(learned(message) for message in messages):
        raise RowError("'messages' needs at least one assistant message (of weight 1) to learn from")


def _check_sharegpt(conversations: Any) -> None:
    if not isinstance(conversations, list) or not conversations:
        raise RowError("'conversations' must be a non-empty list")
    for index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or turn.get("from") not in SHAREGPT_ROLES:
            raise RowError(f"conversations[{index}].from must be one of {', '.join(SHAREGPT_ROLES)}")
        if not isinstance(turn.get("value"), str):
            raise RowError(f"conversations[{index}].value must be a string")
    if not any(SHAREGPT_ROLES[turn["from"]] == "assistant" for turn in conversations):
        raise RowError("'conversations' needs at least one gpt (assistant) turn to learn from")


def learned(message: dict[str, Any]) -> bool:
    """An assistant message the loss learns from (weight 1, the default)."""
    return message.get("role") == "assistant" and message.get("weight", 1) != 0


def chat_messages(row: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """A chat or ShareGPT row as chat messages."""
    if fmt == "sharegpt":
        return [{"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]} for turn in row["conversations"]]
    return row["messages"]


def row_format(row: Any) -> DatasetFormat:
    """The format of one parsed JSON row, or RowError with the reason."""
    if not isinstance(row, dict):
        raise RowError("each row must be a JSON object")
    if "preferred_output" in row or "non_preferred_output" in row:
        _check_openai_dpo(row)
        return "openai_dpo"
    if "chosen" in row or "rejected" in row:
        _check_preference(row)
        return "preference"
    if "messages" in row:
        _check_chat(row["messages"])
        return "chat"
    if "conversations" in row:
        _check_sharegpt(row["conversations"])
        return "sharegpt"
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
        "content), a ShareGPT row (conversations with from and value), a text row (text), or a preference "
        "row (prompt, chosen, rejected; or OpenAI's input, preferred_output, non_preferred_output)"
    )


def _check_prompt_messages(where: str, messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise RowError(f"'{where}' must be a non-empty list of messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise RowError(f"{where}[{index}].role must be one of {', '.join(CHAT_ROLES)}")
        if not isinstance(message.get("content"), str):
            raise RowError(f"{where}[{index}].content must be a string")
    if not any(message["role"] == "user" for message in messages):
        raise RowError(f"'{where}' needs at least one user message")


def _check_answer(where: str, answer: Any) -> None:
    """One assistant answer, as a list with one assistant message."""
    if (not isinstance(answer, list) or len(answer) != 1 or not isinstance(answer[0], dict)
            or answer[0].get("role") != "assistant"):
        raise RowError(f"'{where}' must be a list of one assistant message, "
                       '[{"role": "assistant", "content": "..."}]')
    if not isinstance(answer[0].get("content"), str) or not answer[0]["content"].strip():
        raise RowError(f"{where}[0].content must be a non-empty string")


def _check_preference(row: dict[str, Any]) -> None:
    """TRL's standard preference row with an explicit prompt: all texts, or all messages."""
    for key in ("prompt", "chosen", "rejected"):
        if key not in row:
            raise RowError(f"a preference row needs 'prompt', 'chosen' and 'rejected': '{key}' is missing")
    if isinstance(row["prompt"], str):
        for key in ("prompt", "chosen", "rejected"):
            _require_string(row, key)
        return
    _check_prompt_messages("prompt", row["prompt"])
    for key in ("chosen", "rejected"):
        _check_answer(key, row[key])


def _check_openai_dpo(row: dict[str, Any]) -> None:
    """OpenAI's DPO fine-tuning row: input.messages, then one preferred and one non-preferred answer."""
    source = row.get("input")
    if not isinstance(source, dict):
        raise RowError("'input' must be an object with 'messages'")
    _check_prompt_messages("input.messages", source.get("messages"))
    for key in ("preferred_output", "non_preferred_output"):
        _check_answer(key, row.get(key))


def preference_pair(row: dict[str, Any], fmt: str) -> tuple[str | list[dict], str | list[dict], str | list[dict]]:
    """(prompt, chosen, rejected) of a preference or openai_dpo row: texts, or message lists."""
    if fmt == "openai_dpo":
        return row["input"]["messages"], row["preferred_output"], row["non_preferred_output"]
    return row["prompt"], row["chosen"], row["rejected"]
