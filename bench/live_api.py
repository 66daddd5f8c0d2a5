"""A real `traindock api` for the benchmarks: its own PostgreSQL database (schema rebuilt by the
migrations), its own Redis db, on 127.0.0.1; and what the benchmarks read about it from outside
(CPU time from /proc, open sessions from pg_stat_activity)."""

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, make_url, text

REPO = Path(__file__).resolve().parent.parent
TRAINDOCK = str(Path(sys.executable).parent / "traindock")
# A database and a Redis db that are the benchmark's alone: both are emptied at every start.
DEFAULT_DATABASE = os.environ.get("TRAINDOCK_BENCH_POSTGRES_URL",
                                  "postgresql+psycopg://postgres@127.0.0.1:5432/traindock_bench")
DEFAULT_REDIS = os.environ.get("TRAINDOCK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class LiveApi:
    def __init__(self, database_url: str, redis_url: str, port: int, workers: int, data_dir: Path):
        self.database_url, self.redis_url, self.port, self.workers = database_url, redis_url, port, workers
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")},
                    "TRAINDOCK_DATA_DIR": str(data_dir), "TRAINDOCK_DATABASE_URL": database_url,
                    "TRAINDOCK_BROKER_URL": redis_url, "TRAINDOCK_MAX_QUEUED_JOBS_PER_TENANT": str(10**9)}
        self.engine = create_engine(database_url, pool_size=1, max_overflow=0)
        self.process: subprocess.Popen | None = None
        self.key = ""

    def reset(self) -> None:
        """An empty schema built by the migrations, an empty Redis db, one key."""
        with self.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        self.engine.dispose()
        self._cli("migrate")
        self.key = self._cli("keys", "create", "--tenant", "bench").strip().splitlines()[-1]
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()  # this benchmark's own db

    def _cli(self, *args: str) -> str:
        return subprocess.run([TRAINDOCK, *args], env=self.env, cwd=REPO, check=True,
                              capture_output=True, text=True).stdout

    def start(self) -> None:
        self.process = subprocess.Popen(
            [TRAINDOCK, "api", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200 and \
                        len(self.pids()) > self.workers - (self.workers == 1):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the API did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.engine.dispose()

    def pids(self) -> list[int]:
        """The API process and its worker processes (`--workers` > 1)."""
        assert self.process is not None
        found = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int(_stat_fields(int(entry.name))[1]) == self.process.pid:
                        found.append(int(entry.name))
                except (OSError, IndexError):
                    continue
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLOCK_TICKS

    def db_sessions(self) -> int:
        name = make_url(self.database_url).database
        with self.engine.connect() as connection:
            return connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
                {"name": name})


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ... (utime is index 11)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()


@contextmanager
def live_api(database_url: str, redis_url: str, port: int, workers: int):
    with tempfile.TemporaryDirectory(prefix="traindock-bench-") as folder:
        api = LiveApi(database_url, redis_url, port, workers, Path(folder) / "data")
        api.reset()
        api.start()
        try:
            yield api
        finally:
            api.stop()
