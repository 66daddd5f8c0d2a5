"""The chaos suite's own cluster: a PostgreSQL cluster (initdb in a temporary folder) and a
redis-server without persistence on free ports, which the tests stop and restart at will; a real
API process (uvicorn) and two real worker processes, each in its own process group, on the tiny
model. Settings are short so that each fault plays out in seconds."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

PG_BIN = Path(os.environ.get("TRAINDOCK_CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))
DEMO_ROWS = [json.loads(line) for line in (REPO / "traindock/data/alpaca_demo.jsonl").read_text().splitlines()]
SETTINGS = {
    "TRAINDOCK_HEARTBEAT_INTERVAL_S": "0.5",
    # Longer than the 15 s database stop: an outage must never make an attempt look lost.
    "TRAINDOCK_HEARTBEAT_TIMEOUT_S": "40",
    "TRAINDOCK_RECOVERY_INTERVAL_S": "1",
    "TRAINDOCK_REDISPATCH_AFTER_S": "2",
    "TRAINDOCK_DB_RETRY_S": "60",
    "TRAINDOCK_DRAIN_TIMEOUT_S": "60",
    "TRAINDOCK_MAX_QUEUED_JOBS_PER_TENANT": "3",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)
    return result


class Postgres:
    """A throwaway cluster; run as the postgres user when the tests run as root."""

    def __init__(self):
        # Not under pytest's temporary folders: they are private to the user running the tests.
        self.folder = Path(tempfile.mkdtemp(prefix="traindock-chaos-pg-"))
        self.data = self.folder / "pgdata"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres")
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv) -> None:
        subprocess.run([*self.as_user, *map(str, argv)], check=True, capture_output=True)

    def start(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.folder / "pg.log", "-w", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


class Redis:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers, 10, "redis to start")

    def answers(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port).ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """Gone with everything it held: no persistence."""
        self.process.kill()
        self.process.wait()

    def queue_length(self, queue: str = "gpu") -> int:
        import redis

        return redis.Redis(port=self.port).llen(queue)


@dataclass
class Cluster:
    root: Path
    postgres: Postgres
    redis: Redis
    env: dict[str, str]
    api_port: int = field(default_factory=free_port)
    api: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    key: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.env["TRAINDOCK_DATA_DIR"])

    def start_api(self) -> None:
        log = (self.root / "api.log").open("ab")
        self.api = subprocess.Popen(
            [sys.executable, "-m", "traindock.cli", "api", "--port", str(self.api_port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

        def up() -> bool:
            assert self.api.poll() is None, (self.root / "api.log").read_text()[-3000:]
            try:
                return httpx.get(f"{self.base_url}/openapi.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the API to start", every=0.3)

    def kill_api(self) -> None:
        self.api.kill()
        self.api.wait()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def start_worker(self) -> str:
        name = f"chaos-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        log_path = self.root / f"worker-{name.split('@')[0]}.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "traindock.cli", "worker", "--loglevel", "info", "--name", name],
            env=self.env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True)  # its own process group, as under systemd or in a container
        worker.log_path = log_path

        def ready() -> bool:
            assert worker.poll() is None, log_path.read_text()[-3000:]
            return b"ready." in log_path.read_bytes()

        wait_until(ready, 120, f"worker {name} to start", every=0.3)
        self.workers[name] = worker
        return name

    def stop_worker(self, name: str) -> None:
        worker = self.workers.pop(name)
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    def ensure_workers(self, count: int = 2) -> None:
        for name, worker in list(self.workers.items()):
            if worker.poll() is not None:
                self.workers.pop(name)
        while len(self.workers) < count:
            self.start_worker()


def issue_key(url: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from db.tenants import issue_key as issue

    engine = create_engine(url)
    with Session(engine) as session:
        key = issue(session, "chaos").secret
        session.commit()
    engine.dispose()
    return key


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    if not (PG_BIN / "initdb").exists() or shutil.which("redis-server") is None:
        pytest.skip("the chaos suite needs PostgreSQL's initdb/pg_ctl and redis-server")
    root = tmp_path_factory.mktemp("chaos")
    postgres, redis = Postgres(), Redis(root)
    postgres.start()
    redis.start()
    models = root / "models"
    from worker.tinymodel import build_tiny_model

    build_tiny_model(models / "tiny")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}, **SETTINGS,
           "TRAINDOCK_DATA_DIR": str(root / "data"), "TRAINDOCK_DATABASE_URL": postgres.url,
           "TRAINDOCK_BROKER_URL": redis.url, "TRAINDOCK_MODEL_ROOTS": json.dumps([str(models)])}
    subprocess.run([sys.executable, "-m", "traindock.cli", "migrate"], env=env, check=True, cwd=REPO,
                   capture_output=True)
    chosen = Cluster(root, postgres, redis, env, key=issue_key(postgres.url))
    chosen.start_api()
    try:
        yield chosen
    finally:
        for name in list(chosen.workers):
            chosen.stop_worker(name)
        if chosen.api and chosen.api.poll() is None:
            chosen.kill_api()
        redis.stop()
        postgres.remove()


@pytest.fixture(scope="module")
def dataset_id(cluster) -> int:
    with cluster.client() as client:
        body = "".join(json.dumps(row) + "\n" for row in DEMO_ROWS).encode()
        response = client.post("/datasets", files={"file": ("demo.jsonl", body)})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def job_spec(dataset_id: int, **training) -> dict:
    return {
        "base_model": "tiny", "dataset_id": dataset_id,
        "data": {"cutoff_len": 64, "val_set_size": 16},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "training": {"max_steps": 12, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
                     "learning_rate": 5e-3, "optim": "adamw_torch", "logging_steps": 1,
                     "eval_strategy": "no", "save_steps": 4, "save_total_limit": 2, **training},
    }


def figure(name: str, value) -> None:
    """The suite's figures, as the README's Reliability section quotes them."""
    print(f"\nCHAOS FIGURE {name}: {value}")
    with open(os.environ.get("TRAINDOCK_CHAOS_FIGURES", "/dev/null"), "a") as out:
        out.write(f"{name}: {value}\n")
