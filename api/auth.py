"""Bearer API keys: every endpoint but /health names a tenant, and sees only its own things."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.deps import SessionDep
from db.models import Tenant
from db.tenants import tenant_for_key

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def authenticate(request: Request, session: SessionDep) -> Tenant:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'", headers=UNAUTHORIZED)
    tenant = tenant_for_key(session, key.strip())
    if tenant is None:
        raise HTTPException(401, "invalid or revoked API key", headers=UNAUTHORIZED)
    return tenant


CurrentTenant = Annotated[Tenant, Depends(authenticate)]
