"""A real uvicorn serving the app on a free port, for the unchanged `openai` client."""

import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager

import uvicorn

PORTS = range(18100, 18110)


class CountingApp:
    """Counts the requests per (method, path) that reach the app: retries included."""

    def __init__(self, app):
        self.app = app
        self.requests: Counter = Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.requests[(scope["method"], scope["path"])] += 1
        await self.app(scope, receive, send)


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


@contextmanager
def serve(app):
    """Yields the server's base URL while it runs in a thread."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
