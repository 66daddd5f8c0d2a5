"""`traindock sweep create|list|show|cancel`: hyperparameter sweeps from the terminal."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from traindock.cli.client import api, check, pages
from traindock.cli.commands import Json, Url, age, console, print_json, read_spec

app = typer.Typer(help="Create, list, show and cancel hyperparameter sweeps.", no_args_is_help=True)
SweepArg = Annotated[int, typer.Argument(help="Sweep id.", min=1)]


def metric_text(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def best_text(sweep: dict) -> str:
    best = sweep.get("best")
    if not best:
        return ""
    params = ", ".join(f"{path}={value}" for path, value in best["params"].items())
    return f"trial {best['trial']} (job {best['job_id']}): {metric_text(best['value'])} with {params}"


def print_sweep(sweep: dict) -> None:
    out = console()
    metric = sweep["metric"]
    out.print(f"sweep {sweep['id']} {sweep.get('name') or ''}: {sweep['status']}, {sweep['method']}, "
              f"{sweep['trial_count']}/{sweep['max_trials']} trials, {metric['goal']} {metric['name']}")
    if sweep.get("rung_steps"):
        out.print(f"early stopping (asha) at steps {', '.join(map(str, sweep['rung_steps']))}")
    paths = list(sweep["parameters"])
    table = Table("trial", "job", "status", *paths, metric["name"], "step")
    reverse = metric["goal"] == "maximize"
    scored = sorted(sweep["trials"], key=lambda t: (t["metric"] is None,
                                                     (-t["metric"] if reverse else t["metric"]) if t["metric"] is not None else 0))
    for trial in scored:
        table.add_row(str(trial["trial"]), str(trial["job_id"]), trial["status"],
                      *(str(trial["params"].get(path)) for path in paths), metric_text(trial["metric"]),
                      str(trial["metric_step"] or ""))
    out.print(table)
    if sweep.get("best"):
        out.print(f"best: {best_text(sweep)}")
    if sweep.get("error"):
        out.print(f"error: {sweep['error'].get('message')}")


@app.command("create")
def create(path: Annotated[Path, typer.Argument(help="A sweep request (JSON or YAML): base, parameters, "
                                                "method, metric, ...")], url: Url = None, json_: Json = False):
    """Create a sweep; every trial's spec is checked first."""
    request = read_spec(path)
    with api(url) as client:
        sweep = check(client.post("/sweeps", json=request))
    if json_:
        return print_json(sweep)
    print(f"sweep {sweep['id']} created: {sweep['max_trials']} trials ({sweep['method']}); "
          f"`traindock sweep show {sweep['id']}` follows it")


@app.command("list")
def list_sweeps(url: Url = None, json_: Json = False):
    """List your sweeps, newest first."""
    with api(url) as client:
        items = list(pages(client, "/sweeps"))
    if json_:
        return print_json(items)
    if not items:
        return print("no sweeps")
    table = Table("id", "name", "status", "method", "trials", "metric", "best", "age")
    for s in items:
        best = s.get("best")
        table.add_row(str(s["id"]), s.get("name") or "", s["status"], s["method"], f"{s['trial_count']}/{s['max_trials']}",
                      s["metric"]["name"], f"trial {best['trial']}: {metric_text(best['value'])}" if best else "",
                      age(s.get("created_at")))
    console().print(table)


@app.command("show")
def show(sweep_id: SweepArg, url: Url = None, json_: Json = False):
    """Show a sweep: its trials sorted by the metric, best first."""
    with api(url) as client:
        sweep = check(client.get(f"/sweeps/{sweep_id}"))
    if json_:
        return print_json(sweep)
    print_sweep(sweep)


@app.command("cancel")
def cancel(sweep_id: SweepArg, url: Url = None, json_: Json = False):
    """Cancel a sweep and its active trials."""
    with api(url) as client:
        sweep = check(client.post(f"/sweeps/{sweep_id}/cancel"))
    if json_:
        return print_json(sweep)
    print(f"sweep {sweep['id']} {sweep['status']}; trials: "
          + ", ".join(f"{t['trial']} {t['status']}" for t in sweep["trials"]))
