"""Bearer API keys: every endpoint but /health names a tenant, and sees only its own things."""

from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.datastructures import Headers

from api.errors import unavailable_response
from db.engine import get_sessionmaker
from db.retry import is_transient
from db.models import Tenant
from db.tenants import tenant_for_key

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}
# What answers without a key: liveness and the API's own description.
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def tenant_for_header(session: Session, authorization: str) -> Tenant:
    """The tenant of an 'Authorization: Bearer <key>' header; HTTPException 401 otherwise."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'", headers=UNAUTHORIZED)
    tenant = tenant_for_key(session, key.strip())
    if tenant is None:
        raise HTTPException(401, "invalid or revoked API key", headers=UNAUTHORIZED)
    return tenant


def authenticate(request: Request) -> Tenant:
    """The tenant RequireApiKey found for this request's key."""
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

    def __init__(self, app, public_paths: frozenset[str] = PUBLIC_PATHS):
        self.app = app
        self.public_paths = public_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            return await self.app(scope, receive, send)
        authorization = Headers(scope=scope).get("authorization", "")
        try:
            tenant = await anyio.to_thread.run_sync(_tenant_of, authorization)
        except HTTPException as refused:
            response = JSONResponse({"detail": refused.detail}, status_code=401, headers=UNAUTHORIZED)
            return await response(scope, receive, send)
        except Exception as exc:  # a middleware's errors never reach the app's exception handlers
            if not is_transient(exc):
                raise
            return await unavailable_response()(scope, receive, send)
        scope.setdefault("state", {})["tenant"] = tenant  # request.state.tenant, for `authenticate`
        return await self.app(scope, receive, send)


def _tenant_of(authorization: str) -> Tenant:
    with get_sessionmaker()() as session:
        return tenant_for_header(session, authorization)
