"""The `traindock` command: serve, migrate, run workers, and talk to the API."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from traindock.cli import chat, commands, demo, keys, sweeps
from traindock.cli.failures import run_cli

REPO = Path(__file__).resolve().parents[2]

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(help="Port to listen on.")]
Workers = Annotated[int, typer.Option(min=1, help="API processes (about one per core); each keeps "
                                      "TRAINDOCK_API_THREADS database connections, and 4 more at most.")]


@app.command("migrate")
def migrate() -> None:
    """Upgrade the database schema to the latest migration."""
    from alembic import command
    from alembic.config import Config

    from traindock.settings import get_settings

    get_settings().ensure_dirs()
    config = Config(str(REPO / "alembic.ini"))
    command.upgrade(config, "head")


@app.command("api")
def serve_api(host: Host = "127.0.0.1", port: Port = 8000, workers: Workers = 1) -> None:
    """Serve the REST API."""
    import uvicorn

    # Each process has its own thread pool and database pool (TRAINDOCK_API_THREADS each).
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, log_level="info", workers=workers)


@app.command("worker")
def run_worker(
    queues: Annotated[Optional[str], typer.Option(help="Comma-separated queues (default: the default queue); "
                                                  "'webhooks' alone: only the webhook sender.")] = None,
    concurrency: Annotated[int, typer.Option(help="Jobs at once; one per GPU.", min=1)] = 1,
    gpus: Annotated[Optional[str], typer.Option(help="GPU ids the jobs may use, e.g. 0,1,2,3: a job of "
                                               "resources.gpus N gets the first N (CUDA_VISIBLE_DEVICES).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Worker name (default traindock@<host>).")] = None,
    webhooks: Annotated[bool, typer.Option(help="Start a webhook sender (queue 'webhooks') beside the worker.")] = True,
    loglevel: str = "info",
) -> None:
    """Run a GPU worker: one training job at a time per worker (and a webhook sender beside it)."""
    from worker.placement import parse_gpu_ids

    if gpus is not None:
        try:
            parse_gpu_ids(gpus)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--gpus") from None
        os.environ["TRAINDOCK_GPUS"] = gpus
    from traindock.broker import WEBHOOK_QUEUE
    from traindock.lifetime import die_with_parent
    from traindock.settings import get_settings
    from worker.celery_app import SENDS_WEBHOOKS_ONLY, app as celery

    settings = get_settings()
    try:
        parse_gpu_ids(settings.gpus or "")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="TRAINDOCK_GPUS") from None
    settings.ensure_dirs()
    refuse_unusable_store()
    quiet_root_warning()
    hostname = name or "traindock@%h"
    if queues == WEBHOOK_QUEUE:
        SENDS_WEBHOOKS_ONLY.set()
        # Threads: a send waits on the network, at most webhook_timeout_s each.
        celery.worker_main(["worker", "--queues", WEBHOOK_QUEUE, "--concurrency", str(max(concurrency, 4)),
                            "--pool", "threads", "--loglevel", loglevel, "--hostname", hostname,
                            "--without-gossip", "--without-mingle"])
        return
    if webhooks:
        # Dies with this worker, which also passes its warm or cold shutdown on (worker/drain.py).
        subprocess.Popen([sys.executable, "-m", "traindock.cli", "worker", "--queues", WEBHOOK_QUEUE,
                          "--loglevel", loglevel, "--name", f"webhooks-{hostname}"],
                         preexec_fn=die_with_parent(signal.SIGTERM))
    celery.worker_main([
        "worker", "--queues", queues or settings.default_queue, "--concurrency", str(concurrency),
        "--pool", "prefork", "--loglevel", loglevel, "--hostname", hostname,
        "--without-gossip", "--without-mingle",
    ])


def refuse_unusable_store() -> None:
    """Wrong credentials or no such bucket: one line, and no worker (it could keep no checkpoint)."""
    from traindock.storage import StorageRefused, StorageUnavailable, get_store

    try:
        get_store().check()
    except StorageRefused as exc:
        typer.echo(f"error: {exc}; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and TRAINDOCK_STORAGE_URL", err=True)
        raise typer.Exit(2) from None
    except StorageUnavailable as exc:  # may come back: transfers retry (TRAINDOCK_STORAGE_RETRY_S)
        typer.echo(f"warning: {exc}", err=True)


def quiet_root_warning() -> None:
    """Celery warns on every start as root (containers often run as root): a worker as root
    that accepted pickled messages would run code a message sent. It refuses to start then
    (platforms.check_privileges; C_FORCE_ROOT lets it), and warns even when, as here
    (traindock/broker.py), it accepts JSON only; that warning alone is silenced."""
    import warnings

    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", message="You're running the worker with superuser privileges",
                            category=SecurityWarning)


@app.command("serve")
def run_inference_server(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 0,
    advertise_url: Annotated[Optional[str], typer.Option(help="The URL the API reaches this server at "
                                                         "(default http://HOST:PORT).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name in the worker registry (default serve-<host>-<port>).")] = None,
) -> None:
    """Run an inference server: generations for /v1/chat/completions and /v1/completions."""
    from worker.serve import serve

    serve(host, port, advertise_url, name)


@app.command("up")
def start_everything(host: Host = "127.0.0.1", port: Port = 8000, workers: Workers = 1,
       verbose: Annotated[bool, typer.Option("--verbose", "-v", help="The worker's, the inference server's and "
                                             "the API's full output here, not in <data dir>/logs/.")] = False) -> None:
    """Migrate, then serve the API with one worker and one inference server (the embedded default needs no servers)."""
    import uvicorn

    from traindock.cli.keys import ensure_first_key
    from traindock.lifetime import die_with_parent
    from traindock.settings import get_settings
    from traindock.cli.up import StartWatch, announce, api_log_config, local_url, open_logs

    migrate()
    ensure_first_key(get_settings())
    # uvicorn re-raises the signal that stopped it, so this process may end before `finally`:
    # the worker then gets SIGTERM (a warm shutdown) from the kernel instead.
    settings = get_settings()
    url = local_url(host, port)
    logs = None if verbose else open_logs(settings.logs_dir)
    announce(settings, url, logs)
    # Training and generation share this machine's cores: each keeps its own, or an oversubscribed
    # training process's threads wait on each other (measured: a fifth of the tokens/s on 2 cores).
    threads = settings.training_threads or max(1, (os.cpu_count() or 1) - settings.inference_threads)
    processes = {}
    for name, command, env in (
        ("worker", ["worker", "--loglevel", "info"], {**os.environ, "TRAINDOCK_TRAINING_THREADS": str(threads)}),
        ("serve", ["serve"], None),
    ):
        # Without --verbose each writes to its log file (Celery's banner among it), not to the terminal.
        log = open(logs[name], "ab") if logs else None
        processes[name] = subprocess.Popen([sys.executable, "-m", "traindock.cli", *command], env=env,
                                           stdout=log, stderr=subprocess.STDOUT if log else None,
                                           preexec_fn=die_with_parent(signal.SIGTERM))
        if log:
            log.close()
    worker, inference = processes["worker"], processes["serve"]
    watch = StartWatch(settings, url, processes, logs).start()
    try:
        # Each process has its own thread pool and database pool (TRAINDOCK_API_THREADS each).
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info",
                    **({"log_config": api_log_config(logs["api"])} if logs else {}))
    finally:
        watch.stop()
        inference.send_signal(signal.SIGTERM)
        worker.send_signal(signal.SIGTERM)  # drains: a running job checkpoints and goes back to the queue
        try:
            worker.wait(timeout=get_settings().drain_timeout_s + 30)
        except subprocess.TimeoutExpired:
            worker.kill()


app.command("demo")(demo.run)
app.add_typer(keys.app, name="keys")
app.add_typer(sweeps.app, name="sweep")
commands.register(app)
chat.register(app)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli(app, argv))

