"""The dashboard's files under /ui: public, served from a fixed list with a strict content
security policy, and self-contained (no file from another origin, so it works offline)."""

import re

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.ui import ASSETS, UI_DIR


@pytest.fixture
def anonymous(sqlite_backend):
    with TestClient(create_app(), follow_redirects=False) as client:
        yield client


def test_the_page_and_its_files_answer_without_a_key_with_a_strict_policy(anonymous):
    assert anonymous.get("/ui").headers["location"] == "/ui/"
    page = anonymous.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    referenced = set(re.findall(r'(?:src|href)="([^"#:]+)"', page.text))
    assert {"app.js", "style.css"} <= referenced <= set(ASSETS)
    for name, media_type in ASSETS.items():
        served = anonymous.get(f"/ui/{name}")
        assert served.status_code == 200 and served.headers["content-type"].startswith(media_type), name
    assert {"app.js", "core.js", "sse.js", "charts.js", "style.css"} <= set(ASSETS)


def test_only_the_listed_files_are_served(anonymous):
    for path in ("/ui/nothing.js", "/ui/..%2Froutes%2Fui.py", "/ui/%2e%2e", "/ui/.%2Fapp.js"):
        assert anonymous.get(path).status_code == 404, path
    assert anonymous.get("/ui/../app.py").status_code in (401, 404)  # normalised to /app.py: not public
    assert anonymous.get("/jobs").status_code == 401  # the data stays behind the key


def test_the_files_load_nothing_from_another_origin():
    for path in UI_DIR.iterdir():
        text = path.read_text()
        # The SVG namespace is a name, not a request.
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path.name, urls)
        assert "import(" not in text and "@import" not in text, path.name
