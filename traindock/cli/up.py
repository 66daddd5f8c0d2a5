"""What `traindock up` shows as it starts: a few lines (the API's URL, the dashboard, where the key
is, where the logs go), then one line as each of the API, the worker and the inference server is
ready. The worker's and the inference server's own output (Celery's banner among it) and the API's
request log go to files under <data dir>/logs/, or to the terminal with `--verbose`."""

import copy
import signal
import socket
import threading
from pathlib import Path

import httpx

from traindock.cli.keys import key_file

LOG_NAMES = ("api", "worker", "serve")
# How the worker (0: Celery's warm shutdown) or the inference server (uvicorn re-raises the signal)
# ends when the terminal's Ctrl-C or a SIGTERM reaches it as it reaches `up`.
STOPPED = frozenset({0, -signal.SIGINT, -signal.SIGTERM})
POLL_S = 0.25
TAIL_LINES = 15


def open_logs(logs_dir: Path) -> dict[str, Path]:
    """`<logs_dir>/<name>.log` for the API, the worker and the inference server; the previous
    start's logs are kept as `<name>.log.1`."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in LOG_NAMES:
        path = logs_dir / f"{name}.log"
        if path.exists():
            path.replace(path.with_name(f"{path.name}.1"))
        paths[name] = path
    return paths


def api_log_config(path: Path) -> dict:
    """uvicorn's logging with every line (requests among them) in `path` and only warnings and
    errors on the terminal."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["file"] = {"()": "uvicorn.logging.DefaultFormatter", "use_colors": False,
                                    "fmt": "%(asctime)s %(levelprefix)s %(message)s"}
    config["formatters"]["access_file"] = {
        "()": "uvicorn.logging.AccessFormatter", "use_colors": False,
        "fmt": '%(asctime)s %(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'}
    config["handlers"]["default"]["level"] = "WARNING"
    config["handlers"]["file"] = {"class": "logging.FileHandler", "filename": str(path), "formatter": "file"}
    config["handlers"]["access_file"] = {"class": "logging.FileHandler", "filename": str(path),
                                         "formatter": "access_file"}
    config["loggers"]["uvicorn"]["handlers"] = ["default", "file"]
    config["loggers"]["uvicorn.access"]["handlers"] = ["access_file"]
    return config


def local_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def announce(settings, url: str, logs: dict[str, Path] | None) -> None:
    key = key_file(settings)
    if key.is_file():
        key_line = f"{key}  (send it as 'Authorization: Bearer <key>'; the CLI reads it from there)"
    elif settings.api_key is not None:
        key_line = "TRAINDOCK_API_KEY (set in this environment)"
    else:
        key_line = "none saved here; make one with `traindock keys create --tenant NAME`"
    where = (f"{logs['worker']}, and {logs['serve'].name} and {logs['api'].name} beside it (--verbose: here)"
             if logs else "here (--verbose)")
    say(f"traindock: data in {settings.root}\n"
        f"  API        {url}  (OpenAPI at {url}/docs)\n"
        f"  dashboard  {url}/ui\n"
        f"  API key    {key_line}\n"
        f"  logs       {where}")


def say(text: str) -> None:
    print(text, flush=True)


class StartWatch:
    """Says when the API answers and when the worker and the inference server have registered
    (db/workers.py: the worker once Celery is ready for jobs, the server once it listens); says so
    too when either process ends before it is ready or while `up` runs, with its log's last lines."""

    def __init__(self, settings, url: str, processes: dict[str, "object"], logs: dict[str, Path] | None):
        self.settings, self.url, self.processes, self.logs = settings, url, processes, logs
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="traindock-up-start", daemon=True)

    def start(self) -> "StartWatch":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        waiting = {"api", *self.processes}
        ended: set[str] = set()
        while not self.stopping.is_set():
            before = len(waiting)
            if "api" in waiting and self._api_answers():
                say(f"API ready at {self.url}")
                waiting.discard("api")
            registered = self._registered() if waiting & set(self.processes) else {}
            for name, process in self.processes.items():
                if name in ended:
                    continue
                if process.poll() is not None and not self.stopping.is_set():
                    ended.add(name)
                    waiting.discard(name)
                    if process.returncode not in STOPPED:  # not Ctrl-C, which reaches it too
                        self._say_ended(name, process.returncode)
                elif name in waiting and process.pid in registered:
                    waiting.discard(name)
                    say(self._ready_line(name, registered[process.pid]))
            if before and not waiting and not ended:
                say("ready; Ctrl-C stops (a running job checkpoints and goes back to the queue)")
            self.stopping.wait(POLL_S if waiting else 1.0)

    def _api_answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _registered(self) -> dict[int, object]:
        from db.engine import session_scope
        from db.workers import live_workers

        pids = {process.pid for process in self.processes.values()}
        try:
            with session_scope() as session:
                found = {}
                for worker in live_workers(session, self.settings.heartbeat_timeout_s):
                    if worker.pid in pids and worker.host == socket.gethostname():
                        session.expunge(worker)
                        found[worker.pid] = worker
                return found
        except Exception:  # the database blinked: ask again on the next round
            return {}

    @staticmethod
    def _ready_line(name: str, worker) -> str:
        if name == "serve":
            return f"inference server ready at {worker.inference_url}"
        gpus = len(worker.gpus or [])
        device = f"{gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "CPU"
        return f"worker ready: queue {', '.join(worker.queues)}, {device}"

    def _say_ended(self, name: str, code: int) -> None:
        what = "the inference server" if name == "serve" else "the worker"
        log = self.logs[name] if self.logs else None
        say(f"{what} exited with code {code}" + (f"; the end of {log}:" if log else ""))
        if log:
            say(_tail(log))


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"  ({path} unreadable: {exc})"
    return "\n".join(f"  {line}" for line in lines[-TAIL_LINES:])

