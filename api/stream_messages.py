"""What the live stream sends: database rows turned into numbered SSE messages."""

import json
from dataclasses import dataclass
from itertools import groupby
from pathlib import PurePath
from typing import Any

from sse_starlette import ServerSentEvent

from db.status import FINISHED_JOB_STATES

STATUS, PROGRESS, METRICS, CHECKPOINT, EVENT = "status", "progress", "metrics", "checkpoint", "event"


def sse_type(event_type: str) -> str:
    """The stream type of an event row; both the old names ('status') and the stable ones
    ('job.running', 'checkpoint.saved') are understood."""
    if event_type == "status" or event_type.startswith("job."):
        return STATUS
    if event_type in ("checkpoint", "checkpoint.saved"):
        return CHECKPOINT
    return EVENT


@dataclass(frozen=True)
class StreamMessage:
    seq: int | None
    type: str
    data: dict[str, Any]

    def sse(self) -> ServerSentEvent:
        return ServerSentEvent(
            data=json.dumps(self.data, default=str), event=self.type,
            id=None if self.seq is None else str(self.seq),
        )


def event_message(event, job) -> StreamMessage:
    kind = sse_type(event.type)
    data = event.data or {}
    if kind == STATUS:
        status = data.get("to") or event.type.removeprefix("job.")
        body = {"id": event.job_id, "status": status, **data, "message": event.message,
                "at": event.created_at.isoformat()}
        if status in FINISHED_JOB_STATES:
            body |= {"error": job.error, "result": job.result}
        return StreamMessage(event.seq, STATUS, body)
    if kind == CHECKPOINT:  # the folder by its name, never the server's path
        shown = {**data, **({"path": PurePath(data["path"]).name} if data.get("path") else {})}
        return StreamMessage(event.seq, CHECKPOINT, {**shown, "message": event.message, "run_id": event.run_id})
    return StreamMessage(event.seq, EVENT, {"type": event.type, "message": event.message, "data": event.data,
                                            "run_id": event.run_id, "at": event.created_at.isoformat()})


def metric_messages(points) -> list[StreamMessage]:
    """One message per write batch (points sharing a stream number)."""
    return [
        StreamMessage(seq, METRICS, {"points": [
            {"name": p.name, "step": p.step, "value": p.value, "epoch": p.epoch} for p in batch
        ]})
        for seq, batch in groupby(sorted(points, key=lambda p: (p.seq, p.step, p.name)), key=lambda p: p.seq)
    ]


def job_messages(job, events, points, after: int, up_to: int) -> list[StreamMessage]:
    """Everything of one job numbered in (after, up_to], in order."""
    messages = [event_message(event, job) for event in events] + metric_messages(points)
    if job.progress is not None and after < job.progress_seq <= up_to:
        messages.append(StreamMessage(job.progress_seq, PROGRESS, job.progress))
    return sorted(messages, key=lambda message: message.seq)


def sweep_message(event) -> StreamMessage:
    """One of a sweep's own events (GET /sweeps/{id}/stream)."""
    return StreamMessage(None, "sweep", {"id": event.id, "sweep_id": event.sweep_id, "type": event.type,
                                         "message": event.message, "data": event.data, "at": event.created_at.isoformat()})


def list_message(job) -> StreamMessage:
    """A change in a tenant's job list (GET /jobs/stream)."""
    return StreamMessage(None, STATUS, {"id": job.id, "name": job.name, "status": job.status, "error": job.error})
