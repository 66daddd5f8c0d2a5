"""The FastAPI application."""

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from api.body_limit import BodySizeLimit
from api.errors import validation_error_handler
from api.routes import datasets, health, jobs, schema
from traindock.settings import get_settings


def create_app() -> FastAPI:
    settings = get_settings()
    settings.ensure_dirs()
    app = FastAPI(
        title="traindock",
        version="0.1.0",
        description="Self-hosted REST service that runs LLM fine-tuning jobs.",
    )
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(BodySizeLimit, settings=settings)
    for module in (health, schema, datasets, jobs):
        app.include_router(module.router)
    return app
