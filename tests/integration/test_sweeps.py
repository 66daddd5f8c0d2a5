"""Sweeps through the API without a worker: validation up front, planned trials, reproducible random
sweeps, cancel, and the controller (ASHA, the best trial, the end) driven by trials' stored
metrics and state changes as a worker would write them."""

import pytest

from tests.integration.conftest import authorized, issue, make_spec

LRS = [1e-4, 3e-4, 1e-3, 3e-3]


def sweep_request(dataset_id: int, **overrides) -> dict:
    request = {
        "name": "lr", "base": make_spec(dataset_id), "method": "grid",
        "parameters": {"training.learning_rate": {"values": LRS}},
        "metric": {"name": "loss", "goal": "minimize"}, "max_concurrent_trials": 2,
    }
    return {**request, **overrides}


def create(client, request: dict) -> dict:
    response = client.post("/sweeps", json=request)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_grid_sweep_queues_its_first_trials_as_jobs_tagged_with_the_sweep(client, dataset):
    sweep = create(client, sweep_request(dataset["id"]))
    assert sweep["status"] == "running" and sweep["max_trials"] == 4
    assert [t["params"] for t in sweep["trials"]] == [{"training.learning_rate": lr} for lr in LRS[:2]]
    for trial in sweep["trials"]:
        job = client.get(f"/jobs/{trial['job_id']}").json()
        assert job["status"] == "queued" and job["spec"]["training"]["learning_rate"] == trial["params"]["training.learning_rate"]
        assert job["spec"]["output_dir"] == f"job-{job['id']}"
    assert client.get("/sweeps").json()["items"][0]["id"] == sweep["id"]
    other = client.get(f"/sweeps/{sweep['id']}", headers=authorized(issue("other")))
    assert other.status_code == 404


@pytest.mark.parametrize(("parameters", "loc", "words"), [
    ({"training.lr": {"values": [1e-3]}}, ["body", "parameters", "training.lr"], "'lr' is not a field of training"),
    ({"lora": {"values": [8]}}, ["body", "parameters", "lora"], "a section"),
    ({"dataset_id": {"values": [1]}}, ["body", "parameters", "dataset_id"], "fixed"),
    ({"training.learning_rate": {"values": [1e-3, 20.0]}}, ["body", "parameters", "training.learning_rate"],
     "trial 1 (training.learning_rate=20.0): Input should be less than or equal to 10"),
    ({"training.learning_rate": {"low": 1e-4, "high": 1e-2, "distribution": "log_uniform"}},
     ["body", "parameters", "training.learning_rate"], "grid needs a list of values"),
    ({"training.optim": {"values": ["adamw_torch", "sgd-ish"]}}, ["body", "parameters", "training.optim"], "trial 1"),
    # What the server's checks allow is checked once, in base: a sweep may not vary it.
    ({"trust_remote_code": {"values": [False, True]}}, ["body", "parameters", "trust_remote_code"], "fixed"),
    ({"training.hub_model_id": {"values": ["someone-else/model"]}}, ["body", "parameters", "training.hub_model_id"],
     "fixed"),
    ({"training.push_to_hub": {"values": [True]}}, ["body", "parameters", "training.push_to_hub"], "fixed"),
    ({"objective": {"values": ["sft", "dpo"]}}, ["body", "parameters", "objective"], "fixed"),
    # Every trial's spec passes the server's checks: here, the dataset's rows leave none to train on.
    ({"data.val_set_size": {"values": [0, 5000]}}, ["body", "parameters", "data.val_set_size"],
     "trial 1 (data.val_set_size=5000)"),
])
def test_a_bad_path_or_value_is_a_422_naming_it(client, dataset, parameters, loc, words):
    response = client.post("/sweeps", json=sweep_request(dataset["id"], parameters=parameters))
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == loc and words in problem["msg"], problem
    assert client.get("/jobs").json()["items"] == []


def test_a_tpe_range_is_checked_at_both_ends(client, dataset):
    request = sweep_request(dataset["id"], method="tpe", max_trials=3,
                            parameters={"lora.r": {"low": 0, "high": 8, "distribution": "int"}})
    response = client.post("/sweeps", json=request)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "parameters", "lora.r"]


def test_a_non_int_distribution_on_a_whole_number_value_is_a_422(client, dataset):
    """TPE would ask lora.r 17.3, which no trial spec takes."""
    request = sweep_request(dataset["id"], method="tpe", max_trials=3,
                            parameters={"lora.r": {"low": 4, "high": 32, "distribution": "uniform"}})
    response = client.post("/sweeps", json=request)
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "parameters", "lora.r"] and "'int'" in problem["msg"], problem
    assert client.get("/jobs").json()["items"] == []


def test_asha_needs_the_metric_logged_at_its_rung_steps(client, dataset):
    base = make_spec(dataset["id"], training={"max_steps": 12, "logging_steps": 2})
    response = client.post("/sweeps", json=sweep_request(dataset["id"], base=base,
                                                         early_stopping={"grace_steps": 3, "reduction_factor": 2}))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "early_stopping", "grace_steps"]


def test_a_seeded_random_sweep_draws_the_same_trials_again(client, dataset):
    request = sweep_request(dataset["id"], method="random", seed=7, max_trials=3, max_concurrent_trials=3,
                            parameters={"training.learning_rate": {"low": 1e-5, "high": 1e-2, "distribution": "log_uniform"},
                                        "lora.r": {"values": [4, 8, 16]}})
    first, second = create(client, request), create(client, request)
    assert [t["params"] for t in first["trials"]] == [t["params"] for t in second["trials"]]
    assert len({t["params"]["training.learning_rate"] for t in first["trials"]}) == 3
    other = create(client, {**request, "seed": 8})
    assert [t["params"] for t in other["trials"]] != [t["params"] for t in first["trials"]]


def test_cancelling_a_sweep_cancels_its_active_trials(client, dataset):
    sweep = create(client, sweep_request(dataset["id"]))
    cancelled = client.post(f"/sweeps/{sweep['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert {t["status"] for t in cancelled.json()["trials"]} == {"cancelled"}
    assert len(cancelled.json()["trials"]) == 2  # no trial starts after the cancel
    assert client.post(f"/sweeps/{sweep['id']}/cancel").status_code == 200
    types = [e["type"] for e in client.get(f"/sweeps/{sweep['id']}/events").json()]
    assert types[0] == "sweep.running" and types[-1] == "sweep.cancelled"


def run_trial(job_id: int, losses: dict[int, float]) -> str:
    """What a worker writes for a trial: claimed, its loss at each step, the
    controller's decision at each rung, and its end (succeeded, or early stopped if it was asked)."""
    from db.engine import session_scope
    from db.lifecycle import claim_run, finish_run, finish_stopped
    from db.metrics import record_metric_points
    from db.models import Job
    from db.runs import latest_run
    from db.status import RunStatus
    from db.sweep_control import decide_at_rung

    with session_scope() as session:
        run_id = latest_run(session, job_id).id
        claim_run(session, run_id, "test-worker")
    for step, loss in sorted(losses.items()):
        with session_scope() as session:
            record_metric_points(session, job_id, run_id, [(step, None, {"loss": loss})])
            sweep_id = session.get(Job, job_id).sweep_id
        if decide_at_rung(sweep_id, job_id):
            with session_scope() as session:
                finish_stopped(session, run_id, exit_code=3, checkpoint_step=step, killed=False)
            return ended(job_id)
    with session_scope() as session:
        finish_run(session, run_id, RunStatus.SUCCEEDED, "succeeded", exit_code=0)
    return ended(job_id)


def ended(job_id: int) -> str:
    """As the supervisor does once it recorded how the attempt ended."""
    from db.engine import session_scope
    from db.models import Job
    from db.sweep_control import advance_sweep_of

    advance_sweep_of(job_id)
    with session_scope() as session:
        return session.get(Job, job_id).status


def test_asha_stops_trials_at_rungs_and_the_sweep_names_the_best(client, dataset):
    """Nine trials whose final loss is their learning rate's rank; ASHA (grace 2, factor 3, 18
    steps: rungs at steps 2 and 6) stops the worse ones at a rung and still finds the best."""
    base = make_spec(dataset["id"], training={"max_steps": 18, "logging_steps": 1})
    lrs = [round(1e-4 * (i + 1), 6) for i in range(9)]
    request = sweep_request(dataset["id"], base=base, parameters={"training.learning_rate": {"values": lrs}},
                            max_concurrent_trials=1, early_stopping={"grace_steps": 2, "reduction_factor": 3})
    sweep = create(client, request)
    assert sweep["rung_steps"] == [2, 6]
    ends = []
    for number in range(9):
        trial = client.get(f"/sweeps/{sweep['id']}").json()["trials"][number]
        quality = abs(number - 6) + 1  # trial 6 is the best at every step
        ends.append(run_trial(trial["job_id"], {step: quality + 1 / step for step in range(1, 19)}))
    done = client.get(f"/sweeps/{sweep['id']}").json()
    assert done["status"] == "succeeded", done
    assert done["best"]["trial"] == 6 and done["best"]["params"] == {"training.learning_rate": lrs[6]}
    assert "early_stopped" in ends and ends[6] == "succeeded"
    stopped = [t for t in done["trials"] if t["status"] == "early_stopped"]
    assert stopped and all(t["metric_step"] in (2, 6) for t in stopped)
    events = client.get(f"/sweeps/{sweep['id']}/events").json()
    rungs = [e["data"] for e in events if e["type"] == "trial.rung"]
    assert {r["step"] for r in rungs} == {2, 6} and any(not r["promoted"] for r in rungs)
    job = client.get(f"/jobs/{stopped[0]['job_id']}/events").json()["items"]
    assert [e["type"] for e in job][-2:] == ["job.early_stopping", "job.early_stopped"]


def test_the_sweep_commands(sqlite_backend, monkeypatch, tmp_path, capsys):
    """create, list, show (trials sorted by the metric, best first), cancel; a bad request is one line."""
    import json

    from api.app import create_app
    from tests.integration.conftest import ALPACA_ROWS, jsonl
    from tests.live_server import serve
    from traindock.cli import app
    from traindock.cli.failures import run_cli
    from traindock.settings import get_settings

    monkeypatch.setenv("TRAINDOCK_API_KEY", issue("acme"))
    get_settings.cache_clear()
    with serve(create_app()) as url:
        def cli(*args: str) -> tuple[int, str]:
            code = run_cli(app, [*args, "--url", url])
            out, err = capsys.readouterr()
            assert "Traceback" not in out + err
            return code, out + err

        (tmp_path / "d.jsonl").write_bytes(jsonl(ALPACA_ROWS))
        assert cli("datasets", "upload", str(tmp_path / "d.jsonl"))[0] == 0
        request = tmp_path / "sweep.json"
        request.write_text(json.dumps(sweep_request(1)))
        code, out = cli("sweep", "create", str(request))
        assert code == 0 and "sweep 1 created: 4 trials (grid)" in out
        [first, second] = json.loads(cli("sweep", "show", "1", "--json")[1])["trials"]
        run_trial(second["job_id"], {1: 2.0, 2: 0.5})
        run_trial(first["job_id"], {1: 2.0, 2: 0.9})
        code, out = cli("sweep", "show", "1")
        rows = [line for line in out.splitlines() if "succeeded" in line]
        assert code == 0 and "0.5" in rows[0] and "0.9" in rows[1], out
        assert f"best: trial 1 (job {second['job_id']}): 0.5 with training.learning_rate=0.0003" in out
        assert "running" in cli("sweep", "list")[1]
        code, out = cli("sweep", "cancel", "1")
        assert code == 0 and "sweep 1 cancelled; trials: 0 succeeded, 1 succeeded, 2 cancelled, 3 cancelled" in out
        request.write_text(json.dumps(sweep_request(1, parameters={"training.lr": {"values": [1]}})))
        code, out = cli("sweep", "create", str(request))
        assert code != 0 and "training.lr" in out and len(out.strip().splitlines()) <= 3, out


def fail_trial(job_id: int) -> str:
    from db.engine import session_scope
    from db.lifecycle import claim_run, finish_run
    from db.runs import latest_run
    from db.status import RunStatus

    with session_scope() as session:
        run_id = latest_run(session, job_id).id
        claim_run(session, run_id, "test-worker")
    with session_scope() as session:
        finish_run(session, run_id, RunStatus.FAILED, "failed", exit_code=1, error={"code": "crashed", "message": "boom"})
    return ended(job_id)


def current(client, sweep_id: int) -> dict:
    return client.get(f"/sweeps/{sweep_id}").json()


def test_tpe_asks_each_trial_from_the_results_so_far(client, dataset):
    request = sweep_request(dataset["id"], method="tpe", seed=3, max_trials=4, max_concurrent_trials=1,
                            parameters={"training.learning_rate": {"low": 1e-5, "high": 1e-1, "distribution": "log_uniform"}})
    sweep = create(client, request)
    for number in range(4):
        trial = current(client, sweep["id"])["trials"][number]
        lr = trial["params"]["training.learning_rate"]
        assert 1e-5 <= lr <= 1e-1
        run_trial(trial["job_id"], {1: abs(lr - 1e-3)})
    done = current(client, sweep["id"])
    assert done["status"] == "succeeded" and len(done["trials"]) == 4
    finals = {t["trial"]: t["metric"] for t in done["trials"]}
    assert done["best"]["trial"] == min(finals, key=finals.get)


def test_a_sweep_whose_trials_all_failed_fails(client, dataset):
    sweep = create(client, sweep_request(dataset["id"], max_trials=2, max_concurrent_trials=1))
    for number in range(2):
        fail_trial(current(client, sweep["id"])["trials"][number]["job_id"])
    done = current(client, sweep["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "no_result" and done["best"] is None
    assert client.post(f"/sweeps/{sweep['id']}/cancel").status_code == 409


def test_a_trial_cancelled_by_hand_makes_room_for_the_next(client, dataset):
    sweep = create(client, sweep_request(dataset["id"], max_concurrent_trials=1))
    first = sweep["trials"][0]["job_id"]
    assert client.post(f"/jobs/{first}/cancel").json()["status"] == "cancelled"
    trials = current(client, sweep["id"])["trials"]
    assert [t["status"] for t in trials] == ["cancelled", "queued"]
    job = client.get(f"/jobs/{trials[1]['job_id']}").json()
    assert (job["sweep_id"], job["sweep_trial"]) == (sweep["id"], 1)


def asha_sweep_with_a_second_trial(client, dataset) -> tuple[dict, int]:
    """An ASHA sweep (one trial at a time, 6 steps) whose first trial ran to the end; its second is queued."""
    base = make_spec(dataset["id"], training={"max_steps": 6, "logging_steps": 1})
    sweep = create(client, sweep_request(dataset["id"], base=base, max_concurrent_trials=1,
                                         early_stopping={"grace_steps": 2, "reduction_factor": 2}))
    run_trial(sweep["trials"][0]["job_id"], {2: 1.0, 4: 0.5, 6: 0.4})
    second = current(client, sweep["id"])["trials"][1]["job_id"]
    return sweep, second


def test_an_early_stopped_trial_is_not_resumed(client, dataset):
    _, second = asha_sweep_with_a_second_trial(client, dataset)
    assert run_trial(second, {2: 2.0, 4: 0.1, 6: 0.1}) == "early_stopped"
    response = client.post(f"/jobs/{second}/resume", json={})
    assert response.status_code == 409 and "early_stopped" in response.json()["detail"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_two_controllers_at_once_start_each_trial_once(client, dataset):
    """The sweep's row lock: of controllers racing after a trial ended, one starts the next trial."""
    import threading

    from db.engine import session_scope
    from db.lifecycle import claim_run, finish_run
    from db.runs import latest_run
    from db.status import RunStatus
    from db.sweep_control import advance_now

    sweep = create(client, sweep_request(dataset["id"], max_concurrent_trials=1))
    job_id = sweep["trials"][0]["job_id"]
    with session_scope() as session:
        run_id = latest_run(session, job_id).id
        claim_run(session, run_id, "test-worker")
    with session_scope() as session:
        finish_run(session, run_id, RunStatus.SUCCEEDED, "succeeded", exit_code=0)
    threads = [threading.Thread(target=advance_now, args=(sweep["id"],)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    trials = current(client, sweep["id"])["trials"]
    assert [t["trial"] for t in trials] == [0, 1] and trials[1]["status"] == "queued"
    created = [e for e in client.get(f"/sweeps/{sweep['id']}/events").json() if e["type"] == "trial.created"]
    assert len(created) == 2


def test_the_sweep_stream_shows_its_trials_state_changes_only(backend):
    import httpx

    from api.app import create_app
    from tests.integration.conftest import ALPACA_ROWS, jsonl
    from tests.integration.test_stream import change_status, stream
    from tests.live_server import serve
    from traindock.cli.sse import parse
    from db.status import JobStatus

    key = issue("acme")
    with serve(create_app()) as url, httpx.Client(base_url=url, headers=authorized(key)) as api:
        dataset = api.post("/datasets", files={"file": ("a.jsonl", jsonl(ALPACA_ROWS))}).json()
        other_job = api.post("/jobs", json=make_spec(dataset["id"])).json()["id"]
        sweep = api.post("/sweeps", json=sweep_request(dataset["id"], max_concurrent_trials=1)).json()
        first = sweep["trials"][0]["job_id"]
        assert api.get(f"/sweeps/{sweep['id']}/stream", headers=authorized(issue("other"))).status_code == 404
        with stream(url, key, f"/sweeps/{sweep['id']}/stream") as response:
            events = parse(response.iter_lines())
            greeting = [next(events) for _ in range(3)]  # the active trial; the sweep's events so far
            assert ("status", first, "queued") in [(e.type, e.data.get("id"), e.data.get("status")) for e in greeting]
            assert [e.data["type"] for e in greeting if e.type == "sweep"] == ["sweep.running", "trial.created"]
            change_status(other_job, JobStatus.RUNNING)
            run_trial(first, {1: 1.0})
            seen = []
            while ("sweep", "trial.created", first + 1) not in seen:  # the controller started the next trial
                event = next(events)
                seen.append((event.type, event.data.get("type"), event.data.get("id") if event.type == "status"
                             else (event.data.get("data") or {}).get("job_id")))
            assert ("status", None, first) in seen and all(job_id != other_job for _, _, job_id in seen), seen


def test_a_trial_spec_the_controller_cannot_build_fails_the_sweep_and_cancels_its_trials(client, dataset, monkeypatch):
    """A tpe value that no trial spec takes (ValidationError) fails the sweep with a reason, and its
    active trials are cancelled; the controller does not raise on every later advance."""
    import db.sweep_control

    request = sweep_request(dataset["id"], method="tpe", max_trials=4, max_concurrent_trials=2,
                            parameters={"training.learning_rate": {"low": 1e-5, "high": 1e-1, "distribution": "log_uniform"}})
    sweep = create(client, request)
    [first, second] = [t["job_id"] for t in sweep["trials"]]
    monkeypatch.setattr(db.sweep_control, "ask_tpe", lambda request, outcomes: {"training.learning_rate": 20.0})
    run_trial(first, {1: 1.0})
    done = current(client, sweep["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_trial", done
    assert "trial 2" in done["error"]["message"] and "training.learning_rate" in done["error"]["message"]
    assert client.get(f"/jobs/{second}").json()["status"] == "cancelled"
    failed = client.get(f"/sweeps/{sweep['id']}/events").json()[-1]
    assert failed["type"] == "sweep.failed" and failed["data"]["cancelled_trials"] == [second]


def test_a_trial_of_a_running_sweep_cannot_be_deleted(client, dataset):
    sweep = create(client, sweep_request(dataset["id"], max_concurrent_trials=1))
    first = sweep["trials"][0]["job_id"]
    run_trial(first, {1: 1.0})
    response = client.delete(f"/jobs/{first}")
    assert response.status_code == 409 and "running" in response.json()["detail"], response.text
    client.post(f"/sweeps/{sweep['id']}/cancel")
    assert client.delete(f"/jobs/{first}").status_code == 204


def test_the_controller_goes_on_when_a_trial_is_gone(client, dataset):
    """A trial's job deleted (rows and all) under a running ASHA sweep: its rung events are passed
    over and its number is not given again."""
    from db.engine import session_scope
    from db.jobs import delete_job_rows

    base = make_spec(dataset["id"], training={"max_steps": 6, "logging_steps": 1})
    sweep = create(client, sweep_request(dataset["id"], base=base, max_concurrent_trials=1,
                                         early_stopping={"grace_steps": 2, "reduction_factor": 2}))
    first = sweep["trials"][0]["job_id"]
    run_trial(first, {2: 1.0, 4: 0.5, 6: 0.4})
    second = current(client, sweep["id"])["trials"][1]["job_id"]
    with session_scope() as session:
        delete_job_rows(session, first)
    run_trial(second, {2: 0.9, 4: 0.3, 6: 0.2})
    trials = current(client, sweep["id"])["trials"]
    assert [(t["trial"], t["status"]) for t in trials] == [(1, "succeeded"), (2, "queued")], trials


def test_an_early_stopped_trial_reaches_webhooks_as_cancelled(client, dataset):
    from sqlalchemy import select

    from db.engine import session_scope
    from db.models import Job, WebhookDelivery, WebhookEndpoint

    _, second = asha_sweep_with_a_second_trial(client, dataset)
    with session_scope() as session:
        session.add(WebhookEndpoint(tenant_id=session.get(Job, second).tenant_id, name="ci", url="https://example.com/hook",
                                    event_types=["fine_tuning.job.cancelled"], secret="s" * 32))
    assert run_trial(second, {2: 2.0, 4: 0.1, 6: 0.1}) == "early_stopped"
    with session_scope() as session:
        [delivery] = session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == second))
        assert delivery.event_type == "fine_tuning.job.cancelled"
        assert delivery.payload["data"]["status"] == "early_stopped" and delivery.payload["data"]["job_id"] == second


def test_a_trial_cancelled_after_it_stopped_itself_at_a_rung_ends_cancelled(client, dataset, tmp_path):
    """ASHA stopped the trial and its process exits EXIT_STOPPED, but a cancel came before the
    supervisor's watch saw either: the attempt ends as asked last (cancelled, with its checkpoint),
    not as a worker shutdown that would restart it."""
    from db.engine import session_scope
    from db.lifecycle import claim_run, request_cancel
    from db.metrics import record_metric_points
    from db.runs import latest_run
    from db.sweep_control import decide_at_rung
    from worker.errors import EXIT_STOPPED
    from worker.ranks import RanksEnded
    from worker.supervisor import Watched, _record_outcome

    sweep, second = asha_sweep_with_a_second_trial(client, dataset)
    with session_scope() as session:
        run_id = latest_run(session, second).id
        claim_run(session, run_id, "test-worker")
    with session_scope() as session:
        record_metric_points(session, second, run_id, [(2, None, {"loss": 2.0})])
    assert decide_at_rung(sweep["id"], second)  # early_stopping: the process stops itself
    with session_scope() as session:
        assert request_cancel(session, second).status == "cancelling"
    assert _record_outcome(run_id, RanksEnded(EXIT_STOPPED, tmp_path / "log"), Watched()) == "cancelled"
    job = client.get(f"/jobs/{second}").json()
    assert job["status"] == "cancelled", job
