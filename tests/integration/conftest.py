import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app

ALPACA_ROWS = [
    {"instruction": f"Add {i} and {i + 1}.", "input": "", "output": str(2 * i + 1)} for i in range(20)
]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def issue(tenant: str) -> str:
    from db.engine import session_scope
    from db.tenants import issue_key

    with session_scope() as session:
        return issue_key(session, tenant).secret


def authorized(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class KeyClock:
    """The API key cache's clock, moved on by hand: tests of the cache time never sleep."""

    def __init__(self):
        self.time = 1000.0

    def advance(self, seconds: float) -> None:
        self.time += seconds

    def cache_time(self) -> float:
        from traindock.settings import get_settings

        return get_settings().api_key_cache_s


@pytest.fixture
def key_clock(monkeypatch) -> KeyClock:
    from api import key_cache

    clock = KeyClock()
    monkeypatch.setattr(key_cache, "now", lambda: clock.time)
    return clock


@pytest.fixture
def client(backend):
    """The API as tenant 'acme'."""
    with TestClient(create_app(), headers=authorized(issue("acme"))) as test_client:
        yield test_client


@pytest.fixture
def dataset(client) -> dict:
    response = client.post("/datasets", files={"file": ("alpaca.jsonl", jsonl(ALPACA_ROWS))})
    assert response.status_code == 201, response.text
    return response.json()


def make_spec(dataset_id: int, **overrides) -> dict:
    spec = {"base_model": "acme/tiny-llama", "dataset_id": dataset_id,
            "training": {"max_steps": 4, "logging_steps": 1}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec
