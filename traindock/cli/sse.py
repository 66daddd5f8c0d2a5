"""Reading a Server-Sent Events stream (the API's /stream endpoints)."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class StreamEvent:
    type: str
    data: Any
    id: int | None = None


def parse(lines: Iterable[str]) -> Iterator[StreamEvent]:
    """Events from the lines of a text/event-stream body; keep-alive comments are skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                id = fields.get("id")
                yield StreamEvent(fields.get("event", "message"), json.loads(fields["data"]),
                                  int(id) if id and id.isdigit() else None)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
