"""The inference server (worker/serve.py) on its own, with the real tiny model: what it answers,
what it refuses to load, and its bounded wait for a turn."""

import json
import threading

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reset_caches
from traindock.settings import get_settings
from worker.inference import Engine
from worker.serve import create_server
from worker.tinymodel import build_tiny_model

ASK = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / "tiny")
    build_tiny_model(root / "tiny-2", seed=1)
    (root / "not-a-model").mkdir()
    return root


@pytest.fixture
def server(model_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRAINDOCK_MODEL_ROOTS", json.dumps([str(model_root)]))
    monkeypatch.setenv("TRAINDOCK_INFERENCE_MAX_WAITING", "1")
    monkeypatch.setenv("TRAINDOCK_INFERENCE_QUEUE_TIMEOUT_S", "0.3")
    reset_caches()
    get_settings().ensure_dirs()
    (get_settings().jobs_dir / "tenant-1" / "job-1").mkdir(parents=True)
    engine = Engine(get_settings())
    with TestClient(create_server(engine)) as client:
        client.engine = engine
        yield client
    reset_caches()


def generate(client, **fields):
    body = {"target": {"base": "tiny"}, "prompt": ASK, "max_tokens": 12, "temperature": 0, **fields}
    return client.post("/generate", json=body)


def lines(response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_generation_streams_text_then_its_counts(server):
    response = generate(server)
    assert response.status_code == 200, response.text
    *pieces, done = lines(response)
    assert all(set(piece) == {"text"} for piece in pieces)
    assert done["prompt_tokens"] > 0 and 1 <= done["completion_tokens"] <= 12
    assert done["finish_reason"] in ("stop", "length")
    again = lines(generate(server))
    # Greedy: the same text (pieces ready together are sent together, so their cuts may differ).
    assert "".join(p["text"] for p in again[:-1]) == "".join(p["text"] for p in pieces)


@pytest.mark.parametrize("target", [
    {"base": "../tiny"}, {"base": "/etc"}, {"base": "org/hub-model"}, {"base": "not-a-model"},
    {"base": "tiny", "adapter": "../../../etc"}, {"base": "tiny", "adapter": "/tmp"},
    {"base": "tiny", "weights": "tenant-1/job-1/../../.."}, {"base": "tiny", "adapter": "tenant-1/no-such-job"},
])
def test_nothing_outside_the_model_roots_and_the_jobs_folder_is_loaded(server, target):
    response = generate(server, target=target)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "model_not_found"
    assert not server.engine.models


def test_a_prompt_past_the_context_names_max_tokens(server):
    response = generate(server, max_tokens=2047)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "max_tokens"
    assert generate(server).status_code == 200  # the refusal gave its turn back


def test_a_default_max_tokens_is_shortened_to_what_the_context_has_left(server):
    """The API's default max_tokens (the client gave none) never makes a long prompt a 400."""
    prompt_tokens = lines(generate(server, max_tokens=1))[-1]["prompt_tokens"]
    context = 2048  # worker/tinymodel.py
    asked = context - prompt_tokens + 5
    assert generate(server, max_tokens=asked).status_code == 400
    response = generate(server, max_tokens=asked, fit_context=True)
    assert response.status_code == 200, response.text
    done = lines(response)[-1]
    assert done["prompt_tokens"] == prompt_tokens and done["completion_tokens"] <= context - prompt_tokens


def test_requests_wait_for_a_turn_within_bounds(server):
    server.engine.take_turn()  # a generation under way
    try:
        results = {}
        waiting = threading.Thread(target=lambda: results.setdefault("first", generate(server)))
        waiting.start()
        while server.engine.waiting == 0:
            pass
        refused = generate(server)  # one may wait (TRAINDOCK_INFERENCE_MAX_WAITING=1): this one may not
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        waiting.join()
        timed_out = results["first"]  # it waited TRAINDOCK_INFERENCE_QUEUE_TIMEOUT_S for its turn
        assert timed_out.status_code == 503 and "within 0.3 s" in timed_out.json()["error"]["message"]
    finally:
        server.engine.end_turn()
    assert generate(server).status_code == 200


def test_models_beyond_the_memory_budget_are_unloaded_least_recently_used_first(server):
    size = sum(p.numel() * p.element_size() for p in _loaded(server, "tiny").model.parameters())
    server.engine.budget = int(size * 1.5)  # room for one of the tiny models
    _loaded(server, "tiny-2")
    assert _names(server) == ["tiny-2"]
    server.engine.budget = int(size * 2.5)  # room for two
    _loaded(server, "tiny")
    assert _names(server) == ["tiny-2", "tiny"]
    _loaded(server, "tiny-2")  # used again: now the most recent, unloaded last
    assert _names(server) == ["tiny", "tiny-2"]


def _names(server) -> list[str]:
    return [name.rpartition("@")[0].rsplit("/", 1)[-1] for name in server.engine.models]


def test_a_model_folder_rewritten_since_it_was_loaded_is_loaded_anew(server, model_root):
    """A full fine-tune's checkpoint folder written again (a replaced timeline): its new weights answer."""
    import shutil

    folder = get_settings().jobs_dir / "tenant-1" / "job-1" / "checkpoint-4"
    shutil.copytree(model_root / "tiny", folder)
    weights = {"base": "tiny", "weights": "tenant-1/job-1/checkpoint-4"}
    first = lines(generate(server, target=weights, **SEEDED))
    assert "".join(p["text"] for p in first[:-1]) == _text(server, "tiny")
    for path in (model_root / "tiny-2").glob("*.safetensors"):
        shutil.copy(path, folder / path.name)  # a new file: its own modification time
    again = lines(generate(server, target=weights, **SEEDED))
    assert "".join(p["text"] for p in again[:-1]) == _text(server, "tiny-2") != _text(server, "tiny")
    assert sum(key.startswith(f"{folder}@") for key in server.engine.models) == 1


SEEDED = {"temperature": 1.0, "seed": 3}  # the random tiny models all answer greedily with newlines


def _text(server, base: str) -> str:
    return "".join(p["text"] for p in lines(generate(server, target={"base": base}, **SEEDED))[:-1])


def _loaded(server, base: str):
    assert generate(server, target={"base": base}).status_code == 200
    return server.engine.models[next(reversed(server.engine.models))]


def test_a_client_that_goes_away_stops_its_generation_and_gives_the_turn_back(server):
    import time

    import httpx

    from tests.live_server import serve

    body = {"target": {"base": "tiny"}, "prompt": ASK, "max_tokens": 1500, "temperature": 0}
    with serve(create_server(server.engine)) as url:
        with httpx.stream("POST", f"{url}/generate", json=body, timeout=30) as response:
            next(response.iter_lines())  # the generation has begun; the client leaves
        deadline = time.monotonic() + 10
        while server.engine.busy.locked():
            assert time.monotonic() < deadline, "the turn was never given back"
            time.sleep(0.02)
        answered = httpx.post(f"{url}/generate", json={**body, "max_tokens": 4}, timeout=30)
    assert answered.status_code == 200
    assert json.loads(answered.text.splitlines()[-1])["completion_tokens"] <= 4


def test_a_job_folder_kept_here_is_compared_with_the_object_store_again(sqlite_backend, monkeypatch):
    """With an object store, a final model kept from before a resume is not served for ever: the
    folder is brought up to date (fetch_dir) at most every STORE_CHECK_S."""
    import worker.inference

    settings = get_settings()
    folder = settings.jobs_dir / "tenant-1" / "job-1" / "final"
    folder.mkdir(parents=True)
    fetched = []

    class Store:
        copies = True

        def location_of(self, path):
            return str(path)

        def fetch_dir(self, location):
            fetched.append(location)

    now = [1000.0]
    monkeypatch.setattr(worker.inference, "get_store", lambda: Store())
    monkeypatch.setattr(worker.inference.time, "monotonic", lambda: now[0])
    engine = Engine(settings)
    relative = "tenant-1/job-1/final"
    assert engine._job_folder(relative) == folder.resolve()
    assert len(fetched) == 1  # present here, compared all the same
    now[0] += worker.inference.STORE_CHECK_S / 2
    engine._job_folder(relative)
    assert len(fetched) == 1
    now[0] += worker.inference.STORE_CHECK_S
    engine._job_folder(relative)
    assert len(fetched) == 2
