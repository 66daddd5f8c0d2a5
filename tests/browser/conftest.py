"""The dashboard in a real browser: the system's headless Chromium (apt: chromium), driven by
Playwright, against a real API served by uvicorn (SQLite backend) and, for training, a real
worker process. Any console error or uncaught exception on a page fails the test. Screenshots
of each page go to tests/artifacts/ for a person to look at.

Without Chromium these tests fail; TRAINDOCK_SKIP_BROWSER_TESTS=1 skips them instead (for a
machine that cannot install it)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, reset_caches
from tests.e2e.conftest import models_root, start_worker, stop_worker  # noqa: F401 (fixture)
from tests.integration.conftest import issue
from tests.live_server import serve

CHROMIUM = os.environ.get("TRAINDOCK_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium's own connections get refused here and show
# up as errors; the rest make a quiet, sandbox-free headless run.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def browser():
    """Module scope, not session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, which would break later tests that call asyncio.run()."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("TRAINDOCK_SKIP_BROWSER_TESTS") == "1":
            pytest.skip(f"no Chromium at {CHROMIUM} (TRAINDOCK_SKIP_BROWSER_TESTS=1)")
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium "
                    "(or set TRAINDOCK_SKIP_BROWSER_TESTS=1 to skip the browser tests)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def dashboard(sqlite_backend, models_root, monkeypatch):  # noqa: F811
    """The API (uvicorn in a thread) on the SQLite backend, with the tiny model in its model
    root; `.url` and `.key` (tenant 'browser')."""
    monkeypatch.setenv("TRAINDOCK_MODEL_ROOTS", json.dumps([str(models_root)]))
    reset_caches()
    from api.app import create_app

    with serve(create_app()) as url:
        yield Dashboard(url, issue("browser"), sqlite_backend)


@pytest.fixture
def worker(dashboard, tmp_path, monkeypatch):
    """A real Celery worker process beside the dashboard's API."""
    monkeypatch.setenv("TRAINDOCK_HEARTBEAT_INTERVAL_S", "0.5")
    process = start_worker(tmp_path / "worker.log")
    yield process
    stop_worker(process)


class Dashboard:
    def __init__(self, url: str, key: str, backend):
        self.url, self.key, self.backend = url, key, backend

    def client(self):
        import httpx

        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


@pytest.fixture
def page(browser, request):
    """A fresh browser tab; at the end, no console error and no uncaught exception may have
    happened on it."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.expected_errors = []  # what a test expects the console to report, e.g. "status of 422"
    tab.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    tab.set_default_timeout(20_000)
    yield tab
    context.close()
    unexpected = [p for p in problems if not any(expected in p for expected in tab.expected_errors)]
    assert not unexpected, unexpected


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, dashboard: Dashboard) -> None:
    page.goto(f"{dashboard.url}/ui/")
    page.fill("#api-key", dashboard.key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#jobs-table")
