"""User-given names through the API, on both backends: base_model stays a hub id or a folder inside
a model root, output_dir a plain relative name under the tenant's folder, datasets and checkpoints
are named only by id, and nothing odd (NUL bytes, very long names, encoded dots, backslashes,
symlink loops) gets a 500. Cases are looped inside a test (one backend set-up for many requests);
every assertion names its case."""

import pytest

from tests.integration.conftest import make_spec


@pytest.fixture
def models(backend, tmp_path):
    """The default model root (<data>/models) with models, symlinks, and a secret folder outside."""
    root = (backend.data_dir / "models").resolve()
    (root / "llama").mkdir(parents=True)
    (root / "org" / "mistral").mkdir(parents=True)
    outside = (tmp_path / "outside" / "secret").resolve()
    outside.mkdir(parents=True)
    (root / "escape").symlink_to(outside)
    (root / "org" / "escape").symlink_to(outside.parent)
    (root / "dangling").symlink_to(outside.parent / "not-there")
    (root / "alias").symlink_to(root / "llama")
    (root / "loop").symlink_to(root / "loop")
    return {"root": root, "outside": outside}


def errors_at(response, loc: list) -> list[dict]:
    assert response.status_code == 422, (loc, response.status_code, response.text)
    return [e for e in response.json()["detail"] if e["loc"][: len(loc)] == loc]


def refused(client, dataset, field: str, value, fragment: str = "") -> str:
    """POST /jobs and /jobs/validate both refuse it, naming the field; nothing is stored."""
    case = (field, value[:80] if isinstance(value, str) else value)
    spec = {**make_spec(dataset["id"]), field: value}
    response = client.post("/jobs", json=spec)
    matching = errors_at(response, ["body", field])
    assert matching, (case, response.json())
    assert fragment in matching[0]["msg"], (case, matching)
    report = client.post("/jobs/validate", json=spec)
    assert report.status_code == 200, (case, report.text)
    assert report.json()["valid"] is False, case
    assert any(e["loc"][:2] == ["body", field] for e in report.json()["errors"]), (case, report.json())
    assert client.get("/jobs").json()["items"] == [], case
    return matching[0]["msg"]


def accepted(client, dataset, **change) -> dict:
    response = client.post("/jobs", json=make_spec(dataset["id"], **change))
    assert response.status_code == 201, (change, response.text)
    return response.json()


# base_model ------------------------------------------------------------------------------------


def test_base_model_dot_dot_in_any_position(client, dataset, models):
    for name in ("..", "../", "../models", "../../etc/passwd", "llama/..", "llama/../..",
                 "llama/../../../etc", "org/../../outside", "./../x", "a/b/../../../c"):
        refused(client, dataset, "base_model", name, "..")


def test_base_model_absolute_paths_outside_the_roots(client, dataset, models):
    for name in ("/etc", "/etc/passwd", "/", "/proc/self/root", "/tmp", str(models["outside"]),
                 str(models["root"]) + "-evil", str(models["root"] / "llama" / ".." / ".." / "x")):
        refused(client, dataset, "base_model", name, "model roots")


def test_base_model_absolute_path_inside_a_root_is_accepted(client, dataset, models):
    refused(client, dataset, "base_model", str(models["root"] / "missing"), "no folder")
    accepted(client, dataset, base_model=str(models["root"] / "llama"))


def test_base_model_symlinks_out_of_the_root_are_refused(client, dataset, models):
    for name in ("escape", "org/escape", "org/escape/secret", "dangling"):
        refused(client, dataset, "base_model", name, "symlink")
    for name in (models["root"] / "escape", models["root"] / "org" / "escape" / "secret"):
        refused(client, dataset, "base_model", str(name), "model roots")


def test_base_model_symlink_inside_the_root_and_hub_ids_are_accepted(client, dataset, models):
    for n, name in enumerate(("alias", "llama", "org/mistral", "meta-llama/Llama-3.2-1B")):
        accepted(client, dataset, base_model=name, output_dir=f"out{n}")


def test_base_model_symlink_loop_is_422_not_500(client, dataset, models):
    refused(client, dataset, "base_model", "loop", "loop")
    refused(client, dataset, "base_model", str(models["root"] / "loop"))


def test_base_model_encoded_dots_backslashes_and_odd_names(client, dataset, models):
    for name in ("%2e%2e/%2e%2e/etc", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%2f..%2fetc", "%2E%2E/etc",
                 "..\\..\\etc", "llama\\..\\..\\etc", "C:\\Windows\\System32", "~/.ssh", "org/name/extra",
                 "-rf", ".hidden", "org/na me", "org/name\n"):
        refused(client, dataset, "base_model", name)


def test_base_model_nul_bytes(client, dataset, models):
    for name in ("llama\x00", "\x00/etc/passwd", "org/\x00x", "/etc\x00", "\x00"):
        refused(client, dataset, "base_model", name, "NUL")


def test_base_model_long_names_are_422_not_500(client, dataset, models):
    for name in ("m" * 300, "org/" + "m" * 300, "/" + "m" * 300, "a/" * 500, "m" * 5000, "x/" * 2500):
        refused(client, dataset, "base_model", name)


# output_dir ------------------------------------------------------------------------------------


def test_output_dir_escapes_and_reserved_names(client, dataset):
    for name, fragment in [
        ("/etc", "relative"), ("/tmp/out", "relative"), ("//host/share", "relative"), ("\\out", "relative"),
        ("..", ".."), ("../escape", ".."), ("a/..", ".."), ("a/../../b", ".."), ("x/../y", ".."),
        ("../tenant-2/shared", ".."), ("a\\..\\..\\b", "backslash"), ("a\\b", "backslash"),
        ("a\x00b", "NUL"), ("\x00", "NUL"), (".", "folder"),
        ("./mine", "plain"), ("mine/", "plain"), ("a//b", "plain"), ("a/./b", "plain"),
        ("job-7", "reserved"), ("job-12", "reserved"), ("job-7/sub", "reserved"),
        ("o" * 300, ""), ("o" * 5000, ""), ("o/" * 2500, ""),
    ]:
        refused(client, dataset, "output_dir", name, fragment)


def test_output_dir_is_a_folder_of_the_tenant_under_the_jobs_dir(client, backend, dataset):
    from db.engine import session_scope
    from db.jobs import get_job
    from traindock.paths import job_output_dir
    from traindock.settings import get_settings

    job = accepted(client, dataset, output_dir="runs/v1")
    assert job["spec"]["output_dir"] == "runs/v1"
    with session_scope() as session:
        tenant_id = get_job(session, job["id"]).tenant_id
    folder = job_output_dir(get_settings().jobs_dir, tenant_id, job["spec"]["output_dir"], job["id"])
    assert folder == (backend.data_dir / "jobs" / f"tenant-{tenant_id}" / "runs" / "v1").resolve()


def test_output_dir_never_shares_or_nests_in_another_jobs_folder(client, dataset):
    """A job writing into another's folder could overwrite its checkpoints, or lose its own to the
    other's checkpoint rotation."""
    owner = accepted(client, dataset, output_dir="mine")
    nested = accepted(client, dataset, output_dir="deep/er/still")
    default = accepted(client, dataset)
    for name, job in [("mine", owner), ("mine/checkpoint-100", owner), ("deep", nested), ("deep/er", nested),
                      ("deep/er/still", nested), ("deep/er/still/x", nested)]:
        [error] = errors_at(client.post("/jobs", json=make_spec(dataset["id"], output_dir=name)), ["body", "output_dir"])
        assert f"belongs to job {job['id']}" in error["msg"], (name, error)
    for name in (f"job-{default['id']}", f"job-{default['id']}/checkpoint-4"):
        assert errors_at(client.post("/jobs", json=make_spec(dataset["id"], output_dir=name)), ["body", "output_dir"])
    # a shared prefix that is no folder boundary is another folder; LIKE wildcards are literal
    for name in ("min", "mine2", "deep/e", "run_%", "deep/er/stil"):
        accepted(client, dataset, output_dir=name)
    refused_now = client.post("/jobs", json=make_spec(dataset["id"], output_dir="run_%/x"))
    assert "belongs to job" in errors_at(refused_now, ["body", "output_dir"])[0]["msg"]
    assert client.post("/jobs", json=make_spec(dataset["id"], output_dir="runX%/x")).status_code == 201


# Datasets and checkpoints only by id -----------------------------------------------------------


def test_paths_to_data_are_not_fields_of_a_spec(client, dataset):
    for field, value in [("dataset_path", "/etc/passwd"), ("dataset_path", "../../datasets/1.jsonl"),
                         ("data_path", "/etc/passwd"), ("dataset", "/etc/passwd"), ("model_path", "/etc"),
                         ("output_path", "/tmp/x")]:
        response = client.post("/jobs", json={**make_spec(dataset["id"]), field: value})
        [error] = errors_at(response, ["body", field])
        assert f"unknown field '{field}'" in error["msg"], (field, error)
        assert value not in response.text, field
    response = client.post("/jobs", json=make_spec(dataset["id"], data={"path": "/etc/passwd"}))
    assert errors_at(response, ["body", "data", "path"])


def test_dataset_id_must_be_an_id_not_a_path(client, dataset):
    for value in ("/etc/passwd", "../datasets/1.jsonl", "1.jsonl", f"{dataset['id']}/../2", 0, -1):
        response = client.post("/jobs", json={**make_spec(dataset["id"]), "dataset_id": value})
        assert errors_at(response, ["body", "dataset_id"]), value


def test_resume_from_checkpoint_takes_no_path(client, dataset):
    for value in ("/etc/passwd", "checkpoint-100", "../tenant-2/shared/checkpoint-10", "job-1/checkpoint-4", ""):
        msg = refused(client, dataset, "resume_from_checkpoint", value, "never a path")
        assert value == "" or value not in msg
    for value, loc in [({"job_id": 1, "path": "/etc/passwd"}, "path"), ({"job_id": "../1"}, "job_id"),
                       ({"job_id": 1, "checkpoint": "/x"}, "checkpoint")]:
        response = client.post("/jobs", json=make_spec(dataset["id"], resume_from_checkpoint=value))
        assert errors_at(response, ["body", "resume_from_checkpoint", loc]), value


# URL paths and uploaded file names -------------------------------------------------------------


def test_ids_in_urls_are_numbers(client, dataset):
    for path in ("/datasets/..%2f..%2fetc%2fpasswd", "/datasets/%2e%2e", "/datasets/1%00", "/jobs/%2e%2e/events",
                 "/jobs/..%5c..%5cetc", "/jobs/-1", "/jobs/99999999999999999999999", "/datasets/1.jsonl",
                 f"/datasets/{dataset['id']}%2f..%2f..", "/jobs/1/metrics?cursor=%00"):
        response = client.get(path)
        assert response.status_code in (404, 422), (path, response.status_code, response.text)
    assert client.get(f"/datasets/{dataset['id']}").status_code == 200


def test_uploaded_file_names_never_choose_where_the_file_goes(client, backend):
    folder = backend.data_dir / "datasets"
    for filename in ("../../../etc/passwd", "/etc/passwd", "..\\..\\evil.jsonl", "a\x00b.jsonl",
                     "%2e%2e%2fx", "x" * 300, "x" * 5000):
        response = client.post("/datasets", files={"file": (filename, b'{"text": "hi"}\n')})
        assert response.status_code in (201, 400, 422), (filename[:50], response.text)
        if response.status_code == 201:
            body = response.json()
            assert (folder / f"{body['id']}.jsonl").is_file()
            assert "/" not in body["filename"] and "\x00" not in body["filename"], body
            assert len(body["filename"]) <= 255
    assert all(path.name.split(".")[0].isdigit() for path in folder.iterdir())
    assert not (backend.data_dir.parent / "etc").exists()
    assert not any(backend.data_dir.parent.rglob("evil.jsonl"))
