"""The `traindock` command: serve, migrate, run workers, and talk to the API."""

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def migrate(_args=None) -> None:
    from alembic import command
    from alembic.config import Config

    from traindock.settings import get_settings

    get_settings().ensure_dirs()
    config = Config(str(REPO / "alembic.ini"))
    command.upgrade(config, "head")


def serve_api(args) -> None:
    import uvicorn

    uvicorn.run("api.app:create_app", factory=True, host=args.host, port=args.port, log_level="info")


def run_worker(args) -> None:
    if args.gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpus
    from traindock.settings import get_settings
    from worker.celery_app import app

    settings = get_settings()
    settings.ensure_dirs()
    queues = args.queues or settings.default_queue
    app.worker_main([
        "worker", "--queues", queues, "--concurrency", str(args.concurrency), "--pool", "prefork",
        "--loglevel", args.loglevel, "--hostname", args.name or "traindock@%h",
        "--without-gossip", "--without-mingle",
    ])


def up(args) -> None:
    """API and one worker on this machine (the embedded default needs no servers)."""
    from traindock.keys import ensure_first_key
    from traindock.lifetime import die_with_parent
    from traindock.settings import get_settings

    migrate()
    ensure_first_key(get_settings())
    # uvicorn re-raises the signal that stopped it, so this process may end before `finally`:
    # the worker then gets SIGTERM (a warm shutdown) from the kernel instead.
    worker = subprocess.Popen([sys.executable, "-m", "traindock.cli", "worker", "--loglevel", "warning"],
                              preexec_fn=die_with_parent(signal.SIGTERM))
    try:
        serve_api(args)
    finally:
        worker.send_signal(signal.SIGTERM)  # drains: a running job checkpoints and goes back to the queue
        try:
            worker.wait(timeout=get_settings().drain_timeout_s + 30)
        except subprocess.TimeoutExpired:
            worker.kill()


def build_parser() -> argparse.ArgumentParser:
    from traindock import client, demo, keys

    parser = argparse.ArgumentParser(prog="traindock", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    for name, handler, help in (("api", serve_api, "Serve the REST API."),
                                ("up", up, "Migrate, then serve the API with one worker.")):
        sub = add(name, handler, help)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
    add("migrate", migrate, "Upgrade the database schema to the latest migration.")
    sub = add("worker", run_worker, "Run a GPU worker: one training job at a time per worker.")
    sub.add_argument("--queues", help="Comma-separated queues to consume (default: the default queue).")
    sub.add_argument("--concurrency", type=int, default=1, help="Jobs at once; one per GPU.")
    sub.add_argument("--gpus", help="GPU indices the jobs may use (sets CUDA_VISIBLE_DEVICES).")
    sub.add_argument("--name", help="Worker name (default traindock@<host>).")
    sub.add_argument("--loglevel", default="info")
    sub = add("demo", demo.run, "Train a tiny local model end to end through the API.")
    sub.add_argument("--url", help="API to use (default: start a private API and worker).")
    client.add_commands(add)
    keys.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
