"""Liveness of the API's dependencies: the database, the broker and the store (named)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SettingsDep
from api.errors import TOO_LARGE
from api.queue import broker_reachable
from db.engine import get_engine
from traindock.storage import get_store

router = APIRouter(tags=["health"], responses=TOO_LARGE)


def _check(probe) -> str:
    try:
        return "ok" if probe() else "unavailable"
    except Exception as exc:  # report any failure of the dependency, never raise
        return f"unavailable: {type(exc).__name__}"


def _database_ok() -> bool:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
    return True


@router.get("/health", responses={503: {"description": "The database, the broker or the store is unavailable"}})
def health(settings: SettingsDep):
    store = get_store()
    checks = {"database": _check(_database_ok), "broker": _check(lambda: broker_reachable(settings)),
              "storage": _check(lambda: store.check() or True)}
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(status_code=200 if healthy else 503, content={
        "status": "ok" if healthy else "degraded", **checks, "store": store.describe()})
