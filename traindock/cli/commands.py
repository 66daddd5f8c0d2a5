"""Client commands: the whole API from the terminal. Tables for people, `--json` for scripts."""

import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from traindock.cli.client import CliError, api, check, follow, pages, unpack
from traindock.cli.watch import JobView, show as show_live

Url = Annotated[Optional[str], typer.Option("--url", help="API base URL (default TRAINDOCK_API_URL).")]
Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON, for scripts.")]
JobArg = Annotated[int, typer.Argument(help="Job id.", min=1)]

datasets = typer.Typer(help="Upload, list, show and delete datasets.", no_args_is_help=True)


def console() -> Console:
    return Console(soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def age(timestamp: str | None) -> str:
    if not timestamp:
        return ""
    seconds = (datetime.now(timezone.utc) - datetime.fromisoformat(timestamp)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def read_spec(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        spec = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
        raise CliError(f"{path} is not valid {kind}: {str(error).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise CliError(f"{path} must hold one job spec (an object), not {type(spec).__name__}")
    return spec


def parse_setting(setting: str) -> tuple[str, Any]:
    """'num_train_epochs=5' -> ('num_train_epochs', 5): numbers and true/false as JSON, else text."""
    name, sep, value = setting.partition("=")
    if not sep or not name:
        raise CliError(f"--set takes NAME=VALUE, not {setting!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def watch_job(client, job_id: int, out: Console | None = None) -> dict:
    """Follow the job live until it ends; returns the final job."""
    out = out or console()
    job = check(client.get(f"/jobs/{job_id}"))
    view = JobView(job_id, status=job["status"], progress=job.get("progress") or {},
                   started_at=datetime.fromisoformat(job["started_at"]) if job.get("started_at") else None)
    show_live(follow(client, job_id), view, out)
    return check(client.get(f"/jobs/{job_id}"))


def end_of(job: dict) -> None:
    """A job that did not succeed ends the command with its error and a non-zero exit."""
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise CliError(f"job {job['id']} {job['status']}" + (f": {error.get('message')}" if error else ""))


# ---- Datasets ------------------------------------------------------------------------------------

@datasets.command("upload")
def dataset_upload(path: Annotated[Path, typer.Argument(help="A JSONL file.")], url: Url = None, json_: Json = False):
    """Upload a JSONL dataset (alpaca, chat or text lines)."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    with handle, api(url) as client:
        dataset = check(client.post("/datasets", files={"file": (path.name, handle)}))
    if json_:
        return print_json(dataset)
    print(f"dataset {dataset['id']}: {dataset['rows']} {dataset['format']} rows from {path.name}")


@datasets.command("list")
def dataset_list(url: Url = None, json_: Json = False):
    """List your datasets, newest first."""
    with api(url) as client:
        items = list(pages(client, "/datasets"))
    if json_:
        return print_json(items)
    if not items:
        return print("no datasets")
    table = Table("id", "file", "format", "rows", "bytes", "age")
    for d in items:
        table.add_row(str(d["id"]), d.get("filename") or "", d["format"], str(d["rows"]), str(d["bytes"]),
                      age(d.get("created_at")))
    console().print(table)


@datasets.command("show")
def dataset_show(dataset_id: Annotated[int, typer.Argument(min=1)], url: Url = None, json_: Json = False):
    """Show one dataset."""
    with api(url) as client:
        dataset = check(client.get(f"/datasets/{dataset_id}"))
    if json_:
        return print_json(dataset)
    for key, value in dataset.items():
        print(f"{key:<12} {value}")


@datasets.command("delete")
def dataset_delete(dataset_id: Annotated[int, typer.Argument(min=1)], url: Url = None):
    """Delete a dataset (refused while a queued or running job uses it)."""
    with api(url) as client:
        check(client.delete(f"/datasets/{dataset_id}"))
    print(f"deleted dataset {dataset_id}")


# ---- Jobs ----------------------------------------------------------------------------------------

def submit(spec: Annotated[Path, typer.Argument(help="Job spec: a .json, .yaml or .yml file.")],
           watch: Annotated[bool, typer.Option("--watch", help="Follow the job until it ends.")] = False,
           url: Url = None, json_: Json = False):
    """Submit a job spec."""
    body = read_spec(spec)
    with api(url) as client:
        job = check(client.post("/jobs", json=body))
        if json_:
            print_json(job)
        else:
            print(f"submitted job {job['id']} ({job['status']})")
        if watch:
            end_of(watch_job(client, job["id"]))


def list_jobs(status: Annotated[Optional[list[str]], typer.Option(help="Only jobs in this state (repeatable).")] = None,
              limit: Annotated[int, typer.Option(min=1, max=500)] = 50, url: Url = None, json_: Json = False):
    """List jobs, newest first."""
    with api(url) as client:
        items = check(client.get("/jobs", params={"status": status or [], "limit": limit, "include": "spec"}))["items"]
    if json_:
        return print_json(items)
    if not items:
        return print("no jobs")
    table = Table("id", "name", "model", "status", "step/total", "loss", "age")
    for job in items:
        progress = job.get("progress") or {}
        step = f"{progress['step']}/{progress.get('max_steps') or '?'}" if "step" in progress else ""
        loss = f"{progress['loss']:.4f}" if progress.get("loss") is not None else ""
        table.add_row(str(job["id"]), job.get("name") or "", str(job["spec"].get("base_model", "")),
                      job["status"], step, loss, age(job.get("created_at")))
    console().print(table)


def show(job_id: JobArg, url: Url = None, json_: Json = False):
    """Show a job: status, progress, result or error, attempts."""
    with api(url) as client:
        job = check(client.get(f"/jobs/{job_id}"))
    if json_:
        return print_json(job)
    progress, result = job.get("progress") or {}, job.get("result") or {}
    rows = [("id", job["id"]), ("name", job.get("name")), ("status", job["status"]),
            ("model", job["spec"].get("base_model")), ("dataset", job["spec"].get("dataset_id")),
            ("created", job.get("created_at")), ("started", job.get("started_at")),
            ("finished", job.get("finished_at")),
            ("step", f"{progress.get('step')}/{progress.get('max_steps')}" if progress else None),
            ("loss", progress.get("loss")), ("final model", result.get("final_model_path")),
            ("error", (job.get("error") or {}).get("message")), ("attempts", len(job.get("attempts") or []))]
    for name, value in rows:
        if value not in (None, ""):
            print(f"{name:<12} {value}")


def watch(job_id: JobArg, url: Url = None):
    """Follow a job live until it ends (non-zero exit unless it succeeded)."""
    with api(url) as client:
        end_of(watch_job(client, job_id))


LOG_TYPES = ("traceback", "log")


def is_log(event_type: str) -> bool:
    return any(part in LOG_TYPES for part in event_type.split("."))


def logs(job_id: JobArg,
         attempt: Annotated[Optional[int], typer.Option(min=1, help="Attempt number; default the latest (with "
                                                        "--follow, each next one as the job restarts).")] = None,
         rank: Annotated[Optional[int], typer.Option(min=0, help="A job on several GPUs: this rank's own log; "
                                                     "default the launcher's (torchrun).")] = None,
         follow_: Annotated[bool, typer.Option("--follow", "-f", help="Go on until the job ends.")] = False,
         events: Annotated[bool, typer.Option("--events", help="Only the log lines and tracebacks the job "
                                              "recorded as events.")] = False,
         url: Url = None, json_: Json = False):
    """The attempt's training log (its training process's output, as the API serves it); with
    --events or --json, the log lines and tracebacks the job recorded as events."""
    from traindock.cli.client import attempt_log, follow_log

    def write(chunk: bytes) -> None:
        out = getattr(sys.stdout, "buffer", None)
        sys.stdout.flush()
        if out is None:
            sys.stdout.write(chunk.decode(errors="replace"))
        else:
            out.write(chunk)
            out.flush()

    with api(url) as client:
        check(client.get(f"/jobs/{job_id}"))
        if not (events or json_):
            shown = None
            if follow_:
                for number, chunk in follow_log(client, job_id, attempt, rank):
                    if shown is not None and number != shown:
                        print(f"--- attempt {number}", file=sys.stderr, flush=True)
                    shown = number
                    write(chunk)
            elif (text := attempt_log(client, job_id, attempt, rank)) is not None:
                write(text)
                shown = attempt or "latest"
            if shown is not None:
                return
            if attempt is not None or rank is not None:
                which = f"attempt {attempt or 'latest'}" + (f" rank {rank}" if rank is not None else "")
                raise CliError(f"job {job_id} has no log for {which}")
        if follow_:
            recorded = (e.data for e in follow(client, job_id) if e.type == "event")
        else:
            recorded = pages(client, f"/jobs/{job_id}/events")
        found = 0
        for event in recorded:
            if is_log(event["type"]):
                found += 1
                print_json(event) if json_ else print(event["message"], flush=True)
    if not found and not json_:
        print(f"no log lines recorded for job {job_id}" + ("" if events else ", and no training log yet"),
              file=sys.stderr)


def metrics(job_id: JobArg, name: Annotated[Optional[list[str]], typer.Option(help="Only this metric (repeatable).")] = None,
            csv_: Annotated[bool, typer.Option("--csv", help="step,name,value,epoch lines.")] = False,
            url: Url = None, json_: Json = False):
    """A job's metric points, by step."""
    with api(url) as client:
        points = list(pages(client, f"/jobs/{job_id}/metrics", {"name": name or [], "limit": 500}))
    if json_:
        return print_json(points)
    if csv_:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["step", "name", "value", "epoch"])
        writer.writerows([p["step"], p["name"], p["value"], p["epoch"]] for p in points)
        return
    if not points:
        return print("no metric points")
    table = Table("step", "name", "value", "epoch")
    for p in points:
        table.add_row(str(p["step"]), p["name"], f"{p['value']:.6g}", "" if p["epoch"] is None else f"{p['epoch']:.2f}")
    console().print(table)


def download(job_id: JobArg,
             checkpoint: Annotated[Optional[int], typer.Option(help="A checkpoint's step (default: the final model).", min=0)] = None,
             output: Annotated[Path, typer.Option("--output", "-o", help="Folder to unpack into (created if missing).")] = Path("."),
             url: Url = None):
    """Download the final model (or a checkpoint) and unpack it: <output>/job-<id>-final/."""
    path = (f"/jobs/{job_id}/checkpoints/{checkpoint}/download" if checkpoint is not None
            else f"/jobs/{job_id}/artifacts/final")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CliError(f"cannot create {output}: {error.strerror or error}") from None
    with api(url) as client:
        folders = unpack(client, path, output)
    for folder in folders:
        files = [p for p in (output / folder).rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        print(f"{output / folder}: {len(files)} files, {size / 1e6:.1f} MB")


def _control(job_id: int, action: str, url: str | None, json_: bool, body: dict | None = None) -> None:
    with api(url) as client:
        job = check(client.post(f"/jobs/{job_id}/{action}", json=body))
    if json_:
        return print_json(job)
    print(f"job {job_id}: {job['status']}")
    for warning in job.get("warnings") or []:
        print(f"warning: {warning.get('msg', warning) if isinstance(warning, dict) else warning}", file=sys.stderr)


def cancel(job_id: JobArg, url: Url = None, json_: Json = False):
    """Cancel a job (a running one checkpoints and stops)."""
    _control(job_id, "cancel", url, json_)


def pause(job_id: JobArg, url: Url = None, json_: Json = False):
    """Pause a running job at a checkpoint (resume it later)."""
    _control(job_id, "pause", url, json_)


def resume(job_id: JobArg,
           step: Annotated[Optional[int], typer.Option(help="Checkpoint step (default: the latest usable).", min=0)] = None,
           set_: Annotated[Optional[list[str]], typer.Option("--set", help="An override, NAME=VALUE (repeatable).")] = None,
           url: Url = None, json_: Json = False):
    """Resume a job from a checkpoint, optionally extending it (--set num_train_epochs=5)."""
    body: dict[str, Any] = {"checkpoint_step": step} if step is not None else {}
    if set_:
        body["overrides"] = dict(parse_setting(setting) for setting in set_)
    _control(job_id, "resume", url, json_, body)


# ---- Workers -------------------------------------------------------------------------------------

def gib(size: int) -> str:
    return f"{size / 2**30:.0f} GiB"


def gpu_summary(gpus: list[dict]) -> str:
    """'2x NVIDIA H100 (80 GiB, bf16)'; 'CPU' without GPUs."""
    if not gpus:
        return "CPU"
    kinds: dict[tuple, int] = {}
    for gpu in gpus:
        kind = (gpu["name"], gpu["memory_bytes"], gpu["bf16"])
        kinds[kind] = kinds.get(kind, 0) + gpu.get("count", 1)
    return ", ".join(f"{count}x {name} ({gib(memory)}{', bf16' if bf16 else ''})"
                     for (name, memory, bf16), count in kinds.items())


def workers(url: Url = None, json_: Json = False):
    """What each queue can run now (live workers, GPUs, integrations); admins also see every worker."""
    with api(url) as client:
        registry = check(client.get("/workers"))
    if json_:
        return print_json(registry)
    if not registry["queues"]:
        print("no live workers")
    else:
        table = Table("queue", "live workers", "GPUs", "integrations")
        for queue in registry["queues"]:
            table.add_row(queue["queue"], str(queue["live_workers"]), gpu_summary(queue["gpus"]),
                          ", ".join(queue["integrations"]))
        console().print(table)
    if registry.get("workers"):
        table = Table("worker", "host", "queues", "GPUs", "running jobs", "heartbeat", "state")
        for worker in registry["workers"]:
            state = "live" if worker["live"] else ("stopped" if worker["stopped_at"] else "not seen")
            table.add_row(worker["name"], worker["host"], ",".join(worker["queues"]), gpu_summary(worker["gpus"]),
                          ",".join(map(str, worker["running_job_ids"])), f"{worker['heartbeat_age_s']:.0f}s ago", state)
        console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(datasets, name="datasets")
    for command, name in ((submit, "submit"), (list_jobs, "list"), (show, "show"), (watch, "watch"),
                          (logs, "logs"), (metrics, "metrics"), (download, "download"), (cancel, "cancel"),
                          (pause, "pause"), (resume, "resume"), (workers, "workers")):
        app.command(name)(command)

