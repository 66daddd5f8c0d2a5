"""The unchanged `openai` client's server: tests/live_server.py's uvicorn, and a count of the
requests that reach the app (retries included)."""

from collections import Counter

from tests import live_server
from tests.live_server import free_port

__all__ = ["CountingApp", "free_port", "serve"]


class CountingApp:
    """Counts the requests per (method, path) that reach the app: retries included."""

    def __init__(self, app):
        self.app = app
        self.requests: Counter = Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.requests[(scope["method"], scope["path"])] += 1
        await self.app(scope, receive, send)


def serve(app):
    return live_server.serve(app, lifespan="off")
