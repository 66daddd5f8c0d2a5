"""The worker's entry in the registry (db/workers.py): written when the worker is ready,
refreshed every TRAINDOCK_HEARTBEAT_INTERVAL_S by a thread of the worker's main process, and
marked stopped when it shuts down. What it records is what a job's spec is checked against at
submit (api/worker_fit.py): queues, GPUs, the report_to integrations whose packages are
importable here, and library versions; all without importing torch in this process."""

import importlib.metadata
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import threading

from db.engine import session_scope
from db.workers import beat_worker, mark_worker_stopped, register_worker
from jobspec.choices import REPORT_INTEGRATIONS
from traindock.settings import get_settings
from worker.placement import worker_gpu_ids

log = logging.getLogger(__name__)
GPU_PROBE_TIMEOUT_S = 120
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes")
# report_to name -> the modules transformers looks for (integrations/integration_utils.py).
INTEGRATION_MODULES = {
    "azure_ml": ("azureml.core.run",), "comet_ml": ("comet_ml",), "dagshub": ("dagshub", "mlflow"),
    "dvclive": ("dvclive",), "mlflow": ("mlflow",), "neptune": ("neptune",), "wandb": ("wandb",),
    "codecarbon": ("codecarbon",), "clearml": ("clearml",), "swanlab": ("swanlab",), "trackio": ("trackio",),
    "flyte": ("flytekit",),
}
STOPPING = threading.Event()
_threads: list[threading.Thread] = []


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing or broken
        return False


def installed_integrations() -> list[str]:
    found = []
    for name in REPORT_INTEGRATIONS:
        if name == "tensorboard":
            present = _importable("tensorboard") or _importable("tensorboardX")
        elif name == "kubeflow":  # transformers' test: an environment variable, not a package
            present = os.environ.get("KUBEFLOW_TRAINER_SERVER_URL") is not None
        else:
            present = all(_importable(module) for module in INTEGRATION_MODULES.get(name, (name,)))
        if present:
            found.append(name)
    return found


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def probe_gpus(gpu_ids: list[str]) -> list[dict]:
    """The GPUs of this worker's GPU set, as its training processes see them; [] on CPU."""
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)} if gpu_ids else {})}
    try:
        done = subprocess.run([sys.executable, "-m", "worker.gpus"], capture_output=True, text=True,
                              timeout=GPU_PROBE_TIMEOUT_S, check=True, env=env)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        log.warning("could not list this machine's GPUs; registering none", exc_info=True)
        return []


def worker_facts(name: str, queues: list[str], inference_url: str | None = None) -> dict:
    gpu_ids = worker_gpu_ids(get_settings().gpus)  # `traindock worker` refused a malformed set
    return {"name": name, "host": socket.gethostname(), "pid": os.getpid(), "queues": sorted(queues),
            "gpus": probe_gpus(gpu_ids), "gpu_ids": gpu_ids, "integrations": installed_integrations(),
            "versions": library_versions(), "inference_url": inference_url}


def start_registry_thread(name: str, queues: list[str], inference_url: str | None = None) -> threading.Thread:
    """`inference_url`: an inference server's (worker/serve.py), where the API sends generations."""
    settings = get_settings()

    def loop() -> None:
        facts = worker_facts(name, queues, inference_url)
        registered = False
        while not STOPPING.is_set():
            try:
                with session_scope() as session:
                    if not registered or not beat_worker(session, name, facts["pid"]):
                        register_worker(session, facts)
                registered = True
            except Exception:  # the database blinked: the next beat registers or beats again
                log.warning("could not write this worker's registry entry", exc_info=True)
                registered = False
            STOPPING.wait(settings.heartbeat_interval_s)

    thread = threading.Thread(target=loop, name="traindock-registry", daemon=True)
    thread.start()
    _threads.append(thread)
    return thread


def mark_stopped(name: str, wait_s: float = 3.0) -> None:
    """A worker shutting down takes no more jobs: it is no longer live (its running jobs are
    handed back by worker/drain.py). Called from the shutdown signal handler, so it waits at
    most `wait_s` for the database; unmarked, the worker looks gone after the stale interval."""
    STOPPING.set()

    def mark() -> None:
        for thread in _threads:  # a registration under way must not undo the mark
            thread.join(timeout=wait_s / 2)
        try:
            with session_scope() as session:
                mark_worker_stopped(session, name, os.getpid())
        except Exception:
            log.warning("could not mark this worker stopped", exc_info=True)

    marking = threading.Thread(target=mark, name="traindock-registry-stop", daemon=True)
    marking.start()
    marking.join(timeout=wait_s)
