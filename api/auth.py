"""Bearer API keys: every endpoint but /health names a tenant, and sees only its own things."""

from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.datastructures import Headers

from api.key_cache import KeyCache
from api.errors import unavailable_response
from api.routes.ui import is_ui_path
from db.engine import get_sessionmaker
from db.retry import is_transient
from db.models import Tenant
from db.tenants import tenant_for_key

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}
# What answers without a key: liveness, the API's own description and the dashboard's files
# (the page is public; each call it makes sends the key).
OPENAI_PREFIX = "/v1/"
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or is_ui_path(path)


def bearer_key(authorization: str) -> str:
    """The key of an 'Authorization: Bearer <key>' header; HTTPException 401 otherwise."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'", headers=UNAUTHORIZED)
    return key.strip()


def tenant_for_header(session: Session, authorization: str) -> Tenant:
    """The tenant of an 'Authorization: Bearer <key>' header; HTTPException 401 otherwise."""
    tenant = tenant_for_key(session, bearer_key(authorization))
    if tenant is None:
        raise HTTPException(401, "invalid or revoked API key", headers=UNAUTHORIZED)
    return tenant


async def authenticate(request: Request) -> Tenant:
    """The tenant RequireApiKey found for this request's key (async: no thread for a lookup)."""
    tenant = getattr(request.state, "tenant", None)
    if tenant is None:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'", headers=UNAUTHORIZED)
    return tenant


CurrentTenant = Annotated[Tenant, Depends(authenticate)]


class RequireApiKey:
    """ASGI middleware: a request without a valid key is refused before its body is read.
    FastAPI reads and parses a body (spooling an upload to disk) before it runs the route's
    dependencies, so without this an anonymous client could make the server take in a whole
    upload, or see a body's validation errors, before `authenticate` answers 401."""

    def __init__(self, app, cache_s: float):
        self.app = app
        self.cache = KeyCache(cache_s)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or is_public(scope["path"]):
            return await self.app(scope, receive, send)
        authorization = Headers(scope=scope).get("authorization", "")
        try:
            # A key verified moments ago answers here, without a thread or a query.
            tenant = self.cache.get(bearer_key(authorization))
            if tenant is None:
                tenant = await anyio.to_thread.run_sync(self._verify, authorization)
        except HTTPException as refused:
            content = {"detail": refused.detail}
            if scope["path"].startswith(OPENAI_PREFIX):  # the openai client reads its own envelope
                content = {"error": {"message": refused.detail, "type": "invalid_request_error",
                                     "param": None, "code": "invalid_api_key"}}
            response = JSONResponse(content, status_code=401, headers=UNAUTHORIZED)
            return await response(scope, receive, send)
        except Exception as exc:  # a middleware's errors never reach the app's exception handlers
            if not is_transient(exc):
                raise
            return await unavailable_response()(scope, receive, send)
        scope.setdefault("state", {})["tenant"] = tenant  # request.state.tenant, for `authenticate`
        return await self.app(scope, receive, send)

    def _verify(self, authorization: str) -> Tenant:
        with get_sessionmaker()() as session:
            tenant = tenant_for_header(session, authorization)
        self.cache.put(bearer_key(authorization), tenant)
        return tenant
