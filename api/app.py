"""The FastAPI application."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import RequireApiKey
from api.body_limit import BodySizeLimit
from api.errors import (
    body_error_handler, database_unavailable_handler, storage_unavailable_handler, transition_refused_handler,
    validation_error_handler,
)
from api.openai_compat.app import create_v1_app
from api.routes import datasets, health, jobs, models, samples, schema, stream, sweeps, ui, webhooks, workers
from api.stream_follower import StreamFollower
from db.engine import serve_requests
from db.lifecycle import TransitionRefused
from traindock.dataset_files import sweep_dataset_files
from traindock.settings import Settings, get_settings
from traindock.storage import StorageRefused, StorageUnavailable

log = logging.getLogger(__name__)


def create_app() -> FastAPI:
    settings = get_settings()
    settings.ensure_dirs()
    serve_requests()
    _sweep_uploads(settings)
    app = FastAPI(
        title="traindock",
        version="0.1.0",
        description="Self-hosted REST service that runs LLM fine-tuning jobs.",
        lifespan=_threads_of(settings),
    )
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, body_error_handler)
    app.add_exception_handler(TransitionRefused, transition_refused_handler)
    for unreachable in (OperationalError, InterfaceError):
        app.add_exception_handler(unreachable, database_unavailable_handler)
    for unavailable in (StorageUnavailable, StorageRefused):
        app.add_exception_handler(unavailable, storage_unavailable_handler)
    # The middleware added last runs first: the body limit counts every byte, then no anonymous
    # request's body is read at all.
    app.add_middleware(RequireApiKey, cache_s=settings.api_key_cache_s)
    app.add_middleware(BodySizeLimit, settings=settings)
    app.state.stream_follower = StreamFollower()
    # The stream before jobs: /jobs/stream would otherwise be taken for /jobs/{job_id}.
    for module in (health, schema, datasets, stream, jobs, sweeps, samples, models, webhooks, workers, ui):
        app.include_router(module.router)
    app.mount("/v1", create_v1_app())
    _document_api_key(app)
    return app


def _threads_of(settings: Settings):
    """Sync routes run in anyio's thread pool: its size is the process's concurrency, and the
    database pool is sized to match, so a request never waits for a connection."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        yield

    return lifespan


def _sweep_uploads(settings) -> None:
    """What an API killed mid-upload left behind. Never in the way of starting: the workers'
    recovery loops sweep too."""
    try:
        sweep_dataset_files(settings)
    except Exception:
        log.warning("could not sweep the datasets folder at start-up", exc_info=True)


def _document_api_key(app: FastAPI) -> None:
    """Name the bearer API key in the OpenAPI document, on every operation that answers 401."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = generate()
            document.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {"type": "http", "scheme": "bearer",
                           "description": "An API key from `traindock keys create`."},
            }
            for operations in document["paths"].values():
                for operation in operations.values():
                    if "401" in operation.get("responses", {}):
                        operation["security"] = [{"ApiKey": []}]
        return app.openapi_schema

    app.openapi = openapi
