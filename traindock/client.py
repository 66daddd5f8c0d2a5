"""Client commands: talk to a running API over HTTP."""

import json
import sys
import time
from pathlib import Path

import httpx

from traindock.settings import get_settings

FINISHED = {"succeeded", "failed", "cancelled", "paused"}  # watch stops at these


def api(url: str | None = None) -> httpx.Client:
    from traindock.keys import saved_key

    settings = get_settings()
    key = saved_key(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url or settings.api_url, timeout=30, headers=headers)


def _check(response: httpx.Response) -> dict:
    if response.is_error:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        if isinstance(detail, list):
            detail = "\n".join(f"  {'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
        sys.exit(f"error {response.status_code}:\n{detail}" if "\n" in str(detail) else f"error {response.status_code}: {detail}")
    return response.json() if response.content else {}


def _print(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def progress_line(job: dict) -> str:
    progress = job.get("progress") or {}
    step, total = progress.get("step", 0), progress.get("max_steps") or 0
    width = 30
    filled = int(width * step / total) if total else 0
    bar = "#" * filled + "-" * (width - filled)
    loss = progress.get("loss")
    eta = progress.get("eta_seconds")
    parts = [f"[{bar}] {step}/{total or '?'}", job["status"]]
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if eta is not None and job["status"] == "running":
        parts.append(f"ETA {eta:.0f}s")
    return "  ".join(parts)


def watch_job(client: httpx.Client, job_id: int, interval: float = 0.5) -> dict:
    """Show a progress bar until the job finishes; returns the final job."""
    while True:
        job = _check(client.get(f"/jobs/{job_id}"))
        print("\r" + progress_line(job).ljust(100), end="", flush=True)
        if job["status"] in FINISHED:
            print()
            return job
        time.sleep(interval)


def submit(args) -> None:
    spec = json.loads(Path(args.spec).read_text())
    with api(args.url) as client:
        _print(_check(client.post("/jobs", json=spec)))


def list_jobs(args) -> None:
    with api(args.url) as client:
        params = {"status": args.status} if args.status else {}
        for job in _check(client.get("/jobs", params=params))["items"]:
            print(f"{job['id']:>6}  {job['status']:<10}  {job['name'] or ''}")


def show(args) -> None:
    with api(args.url) as client:
        _print(_check(client.get(f"/jobs/{args.id}")))


def watch(args) -> None:
    with api(args.url) as client:
        job = watch_job(client, args.id)
    if job["status"] != "succeeded":
        sys.exit(f"job {args.id} {job['status']}: {(job.get('error') or {}).get('message', '')}")


def metrics(args) -> None:
    with api(args.url) as client:
        params = {"name": args.name} if args.name else {}
        points, cursor = [], None
        while True:
            page = _check(client.get(f"/jobs/{args.id}/metrics", params={**params, "cursor": cursor} if cursor else params))
            points += page["items"]
            if not (cursor := page["next_cursor"]):
                break
    for point in points:
        print(f"{point['step']:>7}  {point['name']:<24} {point['value']:.6g}")


def cancel(args) -> None:
    with api(args.url) as client:
        _print(_check(client.post(f"/jobs/{args.id}/cancel")))


def pause(args) -> None:
    with api(args.url) as client:
        _print(_check(client.post(f"/jobs/{args.id}/pause")))


def resume(args) -> None:
    body = {"checkpoint_step": args.step} if args.step else {}
    with api(args.url) as client:
        _print(_check(client.post(f"/jobs/{args.id}/resume", json=body)))


def add_commands(add) -> None:
    def with_url(sub):
        sub.add_argument("--url", help="API base URL (default TRAINDOCK_API_URL or http://127.0.0.1:8000).")
        return sub

    with_url(add("submit", submit, "Submit a job spec (JSON file).")).add_argument("spec")
    sub = with_url(add("list", list_jobs, "List jobs, newest first."))
    sub.add_argument("--status", action="append")
    for name, handler, help in (("show", show, "Show a job."),
                                ("watch", watch, "Follow a job with a progress bar until it ends."),
                                ("cancel", cancel, "Cancel a job."),
                                ("pause", pause, "Pause a job: it checkpoints and stops; resume continues it.")):
        with_url(add(name, handler, help)).add_argument("id", type=int)
    sub = with_url(add("metrics", metrics, "Print a job's metric points."))
    sub.add_argument("id", type=int)
    sub.add_argument("--name", action="append", help="Only this metric (repeatable).")
    sub = with_url(add("resume", resume, "Resume a job from a checkpoint."))
    sub.add_argument("id", type=int)
    sub.add_argument("--step", type=int, help="Checkpoint step (default: the latest usable one).")
