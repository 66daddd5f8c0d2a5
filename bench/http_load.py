"""A small keep-alive HTTP/1.1 load generator for 127.0.0.1: each of `concurrency` connections
sends its next request when the last one is answered, until `requests` are done or `seconds` pass.
Hand-written on asyncio streams so the client costs little of the CPU the server also needs."""

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Request = tuple[str, str, bytes | None]  # method, path, JSON body


@dataclass
class Result:
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.latencies_s) if self.latencies_s else float("nan")

    @property
    def errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


class Connection:
    def __init__(self, port: int, headers: dict[str, str]):
        self.port = port
        self.fixed = "".join(f"{name}: {value}\r\n" for name, value in {"host": "127.0.0.1", **headers}.items())

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\n{self.fixed}"
        if body is not None:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _load(port: int, headers: dict[str, str], make: Callable[[int], Request], concurrency: int,
                requests: int, seconds: float) -> Result:
    result = Result()
    issued = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        nonlocal issued
        connection = Connection(port, headers)
        await connection.open()
        try:
            while issued < requests and time.perf_counter() < deadline:
                index = issued
                issued += 1
                method, path, body = make(index)
                sent = time.perf_counter()
                status, _ = await connection.send(method, path, body)
                result.latencies_s.append(time.perf_counter() - sent)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


def run_load(port: int, headers: dict[str, str], make: Callable[[int], Request], *, concurrency: int,
             requests: int, seconds: float) -> Result:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_load(port, headers, make, concurrency, requests, seconds))
