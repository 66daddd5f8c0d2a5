"""The /v1 sub-application: its own error envelope; the parent's key and body-size middleware
run before it."""

from fastapi import FastAPI

from api.openai_compat import completions, files, fine_tuning, models, webhooks
from api.openai_compat.errors import HANDLERS


def create_v1_app() -> FastAPI:
    app = FastAPI(title="traindock OpenAI-compatible API", version="0.1.0",
                  description="The `openai` client's files, fine_tuning.jobs, models, webhooks, chat.completions "
                  "and completions calls.")
    for exception, handler in HANDLERS.items():
        app.add_exception_handler(exception, handler)
    for module in (files, fine_tuning, models, webhooks, completions):
        app.include_router(module.router)
    return app
