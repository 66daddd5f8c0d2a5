"""One follower per API process reads the database for every stream client at once.

Each poll costs the same few queries whatever the number of clients: the heads of the followed
jobs, then (only when a head moved or a client joined behind) the events and metric points
numbered between the lowest client position and the head. Messages fan out to the clients'
queues. Positions are the per-job stream numbers of db/sequence.py, read up to the head only, so
what a client gets is gap-free and never repeated, replay and live alike."""

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial

import anyio

from api.stream_messages import StreamMessage, job_messages, list_message, sweep_message
from db import stream as queries
from db.engine import get_sessionmaker
from db.status import FINISHED_JOB_STATES, RESTING_JOB_STATES

log = logging.getLogger(__name__)

END = None  # pushed to a client's queue: the stream is complete
# A client this far behind is dropped; it reconnects with Last-Event-ID and replays instead.
MAX_QUEUED = 10_000
# Rows read per job and poll, at most (a long job's replay takes several polls, back to back).
MAX_SEQS_PER_POLL = 2_000
# A writer stamps updated_at before it commits: look back this far for changes just committed.
COMMIT_MARGIN = timedelta(seconds=30)


@dataclass(eq=False)
class JobClient:
    job_id: int
    cursor: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class TenantClient:
    tenant_id: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    greeted: bool = False  # has had the snapshot of the tenant's active jobs
    sweep_id: int | None = None  # only this sweep's trials, and its own events (GET /sweeps/{id}/stream)
    sweep_cursor: int = 0  # the id of the last sweep event sent

    def shows(self, row) -> bool:
        return self.sweep_id is None or row.sweep_id == self.sweep_id


@dataclass
class Reading:
    heads: dict[int, object]
    messages: dict[int, list[StreamMessage]]
    read_up_to: dict[int, int] = field(default_factory=dict)
    list_changes: list = field(default_factory=list)
    seeded: dict[int, list] = field(default_factory=dict)
    sweep_events: list = field(default_factory=list)


class StreamFollower:
    def __init__(self, interval_s: float = 0.25):
        self.interval_s = interval_s
        self.jobs: dict[int, set[JobClient]] = defaultdict(set)
        self.tenants: dict[int, set[TenantClient]] = defaultdict(set)
        self.known: dict[int, dict[int, object]] = {}  # tenant -> job -> the row last sent
        self.since: datetime | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    # ---- Clients ----------------------------------------------------------------------------

    def follow_job(self, job_id: int, after: int) -> JobClient:
        client = JobClient(job_id, after)
        self.jobs[job_id].add(client)
        self._start()
        return client

    def follow_tenant(self, tenant_id: int, *, sweep_id: int | None = None) -> TenantClient:
        client = TenantClient(tenant_id, sweep_id=sweep_id)
        self.tenants[tenant_id].add(client)
        if tenant_id in self.known:
            self._greet(client)
        self._start()
        return client

    def _greet(self, client: TenantClient) -> None:
        """A live list starts from the tenant's active jobs, then gets their changes."""
        for row in self.known[client.tenant_id].values():
            if row.status not in FINISHED_JOB_STATES and client.shows(row):
                client.queue.put_nowait(list_message(row))
        client.greeted = True

    def leave(self, client: JobClient | TenantClient) -> None:
        group, key = (self.jobs, client.job_id) if isinstance(client, JobClient) else (self.tenants, client.tenant_id)
        group[key].discard(client)
        if not group[key]:
            del group[key]
            if group is self.tenants:
                self.known.pop(key, None)

    def _start(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done() or self._task.get_loop() is not asyncio.get_running_loop():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    # ---- The loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while self.jobs or self.tenants:
            self._wake.clear()
            try:
                await self.poll()
            except Exception:
                log.exception("stream follower: poll failed; retrying")
            with anyio.move_on_after(self.interval_s):
                await self._wake.wait()

    async def poll(self) -> None:
        floors = {job_id: min(client.cursor for client in clients) for job_id, clients in self.jobs.items()}
        tenant_ids, new_tenants = list(self.tenants), [t for t in self.tenants if t not in self.known]
        since, self.since = self.since, datetime.now(timezone.utc) - COMMIT_MARGIN
        sweeps: dict[int, int] = {}  # sweep -> the lowest cursor of its clients
        for client in (c for clients in self.tenants.values() for c in clients if c.sweep_id):
            sweeps[client.sweep_id] = min(sweeps.get(client.sweep_id, client.sweep_cursor), client.sweep_cursor)
        reading = await anyio.to_thread.run_sync(partial(self._read, floors, tenant_ids, new_tenants, since, sweeps))
        self._send_jobs(floors, reading)
        self._send_lists(reading)
        self._send_sweep_events(sweeps, reading)

    def _read(self, floors: dict[int, int], tenant_ids: list[int], new_tenants: list[int],
              since: datetime | None, sweeps: dict[int, int]) -> Reading:
        with get_sessionmaker()() as session:
            reading = Reading({}, {})
            if floors:
                reading.heads = {head.id: head for head in queries.heads(session, list(floors))}
                ranges = {job_id: (floors[job_id], min(head.stream_seq, floors[job_id] + MAX_SEQS_PER_POLL))
                          for job_id, head in reading.heads.items() if head.stream_seq > floors[job_id]}
                reading.read_up_to = {job_id: up_to for job_id, (_, up_to) in ranges.items()}
                if ranges:
                    events, points = queries.written_between(session, ranges)
                    for job_id, (after, up_to) in ranges.items():
                        reading.messages[job_id] = job_messages(
                            reading.heads[job_id], [e for e in events if e.job_id == job_id],
                            [p for p in points if p.job_id == job_id], after, up_to,
                        )
            if new_tenants:
                for row in queries.list_rows(session, new_tenants):
                    reading.seeded.setdefault(row.tenant_id, []).append(row)
                reading.seeded |= {tenant_id: reading.seeded.get(tenant_id, []) for tenant_id in new_tenants}
            if tenant_ids and since is not None:
                reading.list_changes = queries.list_rows_changed_since(session, tenant_ids, since)
            if sweeps:
                reading.sweep_events = queries.sweep_events_after(session, sweeps)
            return reading

    def _send_jobs(self, floors: dict[int, int], reading: Reading) -> None:
        for job_id, floor in floors.items():
            head = reading.heads.get(job_id)
            for client in list(self.jobs.get(job_id, ())):
                if client.cursor < floor:
                    continue  # joined behind during the read: the next poll starts from it
                if head is None:
                    client.queue.put_nowait(END)
                    continue
                up_to = reading.read_up_to.get(job_id, head.stream_seq)
                for message in reading.messages.get(job_id, ()):
                    if message.seq > client.cursor:
                        client.queue.put_nowait(message)
                client.cursor = max(client.cursor, up_to)
                caught_up = client.cursor >= head.stream_seq
                if client.queue.qsize() > MAX_QUEUED or (caught_up and head.status in RESTING_JOB_STATES):
                    client.queue.put_nowait(END)
                elif not caught_up:
                    self._wake.set()  # more to replay: no pause before the next read

    def _send_lists(self, reading: Reading) -> None:
        for tenant_id, rows in reading.seeded.items():
            if tenant_id in self.tenants:
                self.known[tenant_id] = {row.id: row for row in rows}
                for client in self.tenants[tenant_id]:
                    if not client.greeted:
                        self._greet(client)
        for row in reading.list_changes:
            known = self.known.get(row.tenant_id)
            if known is None or (row.id in known and known[row.id].status == row.status):
                continue
            known[row.id] = row
            for client in self.tenants.get(row.tenant_id, ()):
                if client.shows(row):
                    client.queue.put_nowait(list_message(row))

    def _send_sweep_events(self, floors: dict[int, int], reading: Reading) -> None:
        """A sweep's own events (written under its row lock, so in id order) after each client's cursor."""
        for clients in self.tenants.values():
            for client in clients:
                if client.sweep_id not in floors or client.sweep_cursor < floors[client.sweep_id]:
                    continue  # joined during the read: the next poll starts from its cursor
                for event in reading.sweep_events:
                    if event.sweep_id == client.sweep_id and event.id > client.sweep_cursor:
                        client.queue.put_nowait(sweep_message(event))
                        client.sweep_cursor = event.id
