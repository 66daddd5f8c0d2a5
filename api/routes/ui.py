"""The web dashboard: static files under /ui, public (every data call the page makes sends the
key). A fixed set of files, served with headers that keep the page to itself: scripts, styles
and requests only from this origin, no framing, no referrer."""

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# Read once: a name not in here is 404, so no request can name a file outside the folder.
ASSETS = {path.name: TYPES[path.suffix] for path in UI_DIR.iterdir() if path.suffix in TYPES}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def is_ui_path(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


@router.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/")
def ui_index() -> FileResponse:
    return _asset("index.html")


@router.get("/ui/{name}")
def ui_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, f"no dashboard file {name!r}")
    return _asset(name)


def _asset(name: str) -> FileResponse:
    return FileResponse(UI_DIR / name, media_type=ASSETS[name], headers=HEADERS)
