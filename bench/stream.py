"""The live stream under load: one job followed by 1, then by N (default 200) SSE clients at once,
against a real `traindock api` on PostgreSQL, while a writer records metric points and progress
the way the training callback does. Prints delivery latency (commit -> client) p50/p99 and the
API's database transactions per second with 1 and with N clients.
Goals: p99 <= 1.5 s; the API's database work the same with 1 and N clients.

    createdb -h 127.0.0.1 -U postgres bench_h9
    python bench/stream.py [--clients 200] [--seconds 20] [--write-interval 0.5] [--port 18091]

The database's schema is dropped and rebuilt. Transactions are counted from pg_stat_database
(xact_commit + xact_rollback of the bench database) less the writer's own; each API poll is one
transaction of one to three statements.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def prepare(url: str, data_dir: Path) -> dict[str, str]:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    env = {**os.environ, "TRAINDOCK_DATABASE_URL": url, "TRAINDOCK_DATA_DIR": str(data_dir),
           "TRAINDOCK_BROKER_URL": "redis://127.0.0.1:6379/12"}
    subprocess.run([sys.executable, "-m", "traindock.cli", "migrate"], env=env, check=True, cwd=REPO,
                   capture_output=True)
    os.environ.update({k: env[k] for k in ("TRAINDOCK_DATABASE_URL", "TRAINDOCK_DATA_DIR", "TRAINDOCK_BROKER_URL")})
    return env


def running_job() -> tuple[str, int, int]:
    """A key, a running job and its run, written directly (no broker, no worker)."""
    from db.engine import session_scope
    from db.lifecycle import claim_run, create_job
    from db.tenants import issue_key

    with session_scope() as session:
        issued = issue_key(session, "bench")
        tenant_id = session.execute(text("SELECT id FROM tenants WHERE name = 'bench'")).scalar_one()
        job = create_job(session, tenant_id=tenant_id, spec={"base_model": "bench"}, dataset_id=None,
                         queue="gpu", name="bench")
        run = job.runs[0]
    with session_scope() as session:
        claim_run(session, run.id, "bench")  # running, as a worker leaves it
    return issued.secret, job.id, run.id


class Writer(threading.Thread):
    """Metric points and progress every `interval` seconds, one transaction each, as the callback
    writes them; remembers when each step was committed."""

    def __init__(self, job_id: int, run_id: int, interval: float):
        super().__init__(daemon=True)
        self.job_id, self.run_id, self.interval = job_id, run_id, interval
        self.committed: dict[int, float] = {}
        self.transactions = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from db.engine import session_scope
        from db.jobs import set_progress
        from db.metrics import record_metric_points

        step = 0
        while not self.stop.wait(self.interval):
            step += 1
            with session_scope() as session:
                record_metric_points(session, self.job_id, self.run_id,
                                     [(step, step / 100, {"loss": 1 / step, "learning_rate": 1e-4, "grad_norm": 1.0})])
                set_progress(session, self.job_id, {"step": step, "max_steps": 100_000})
            self.committed[step] = time.time()
            self.transactions += 1


async def client(url: str, key: str, job_id: int, received: list, ready: asyncio.Event, counter: list) -> None:
    """One SSE client: records (step, arrival time) of every metrics event it gets."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
        async with http.stream("GET", f"{url}/jobs/{job_id}/stream",
                               headers={"Authorization": f"Bearer {key}"}) as response:
            response.raise_for_status()
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "metrics":
                    now = time.time()
                    # Cheap: the step is the first "step" in the data line.
                    step = int(line.split('"step": ', 1)[1].split(",", 1)[0])
                    received.append((step, now))
                    if not counter[0] or step > counter[0]:
                        counter[0] = step
                if line == "" and not ready.is_set() and counter[0]:
                    ready.set()


def transactions(admin_url: str, database: str) -> int:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        value = connection.execute(text(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :name"), {"name": database}
        ).scalar_one()
    engine.dispose()
    return value


async def phase(url: str, key: str, job_id: int, writer: Writer, clients: int, seconds: float,
                admin_url: str, database: str) -> dict:
    received: list[tuple[int, float]] = []
    ready = [asyncio.Event() for _ in range(clients)]
    tasks = [asyncio.create_task(client(url, key, job_id, received, ready[i], [0])) for i in range(clients)]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), timeout=120)
    await asyncio.sleep(1)  # the replays are over
    first_step = max(writer.committed) + 1
    before, writes_before, started = transactions(admin_url, database), writer.transactions, time.monotonic()
    await asyncio.sleep(seconds)
    after, writes_after, elapsed = transactions(admin_url, database), writer.transactions, time.monotonic() - started
    last_step = max(writer.committed)
    await asyncio.sleep(2)  # the last writes arrive
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted(now - writer.committed[step] for step, now in received
                       if first_step <= step <= last_step and step in writer.committed)
    expected = clients * (last_step - first_step + 1)
    # Two bench reads (before/after) are on another database; the writer's transactions are not the API's.
    api_transactions = (after - before) - (writes_after - writes_before)
    return {
        "clients": clients,
        "deliveries": len(latencies), "expected": expected,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None,
        "api_db_transactions_per_s": api_transactions / elapsed,
        "writer_transactions_per_s": (writes_after - writes_before) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/bench_h9")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20, help="Measured time per phase (<= 30).")
    parser.add_argument("--write-interval", type=float, default=0.5)
    parser.add_argument("--port", type=int, default=18091)
    args = parser.parse_args()
    seconds = min(args.seconds, 30)  # two phases: at most a minute of load
    database = args.database_url.rsplit("/", 1)[1]
    admin_url = args.database_url.rsplit("/", 1)[0] + "/postgres"

    with tempfile.TemporaryDirectory() as scratch:
        env = prepare(args.database_url, Path(scratch) / "data")
        key, job_id, run_id = running_job()
        url = f"http://127.0.0.1:{args.port}"
        api = subprocess.Popen([sys.executable, "-m", "traindock.cli", "api", "--port", str(args.port)],
                               env={**env, "TRAINDOCK_API_KEY": key}, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=open(Path(scratch) / "api.log", "wb"))
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if api.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the API did not start:\n" + (Path(scratch) / "api.log").read_text()[-2000:])
                time.sleep(0.2)
            writer = Writer(job_id, run_id, args.write_interval)
            writer.start()
            time.sleep(args.write_interval * 2)
            results = [asyncio.run(phase(url, key, job_id, writer, n, seconds, admin_url, database))
                       for n in (1, args.clients)]
            writer.stop.set()
            writer.join()
        finally:
            api.terminate()
            api.wait(timeout=30)
    print(f"writes every {args.write_interval} s (3 metric points + progress); {seconds:.0f} s measured per phase")
    print(f"{'clients':>8} {'delivered':>12} {'p50 s':>7} {'p99 s':>7} {'API db tx/s':>12} {'writer tx/s':>12}")
    for r in results:
        print(f"{r['clients']:>8} {r['deliveries']:>5}/{r['expected']:<6} {r['p50_s']:>7.3f} {r['p99_s']:>7.3f} "
              f"{r['api_db_transactions_per_s']:>12.2f} {r['writer_transactions_per_s']:>12.2f}")
    one, many = results
    print(f"goal p99 <= 1.5 s: {'met' if many['p99_s'] <= 1.5 else 'MISSED'}; "
          f"API db work {many['clients']} clients / 1 client = "
          f"{many['api_db_transactions_per_s'] / one['api_db_transactions_per_s']:.2f}")


if __name__ == "__main__":
    main()
