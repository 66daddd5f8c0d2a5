"""Tenants and their API keys. A key is shown once and stored only as a SHA-256 hash: keys are
long random strings, so a fast hash suffices (nothing to brute-force)."""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "td"
# td_<key id: hex>_<secret: URL-safe base64>, as issue_key makes them.
KEY_FORMAT = re.compile(rf"{KEY_PREFIX}_[0-9a-f]{{1,32}}_[A-Za-z0-9_-]{{1,256}}")


@dataclass
class IssuedKey:
    key_id: str
    secret: str  # the whole key: shown once, never stored
    tenant: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def lock_tenant(session: Session, tenant_id: int) -> None:
    """Hold the tenant's row write lock until the transaction ends (PostgreSQL: a row lock; SQLite:
    the database write lock). Submits take it before their checks, so two of one tenant's submits
    run one after the other: checking a limit or a free output folder, then inserting, is then
    atomic."""
    session.execute(update(Tenant).where(Tenant.id == tenant_id).values(name=Tenant.name))


def issue_key(session: Session, tenant_name: str) -> IssuedKey:
    tenant = get_or_create_tenant(session, tenant_name)
    key_id = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(key_id=key_id, tenant_id=tenant.id, key_hash=_hash(secret)))
    session.flush()
    return IssuedKey(key_id, secret, tenant.name)


def tenant_for_key(session: Session, key: str) -> Tenant | None:
    """The tenant of a valid, unrevoked key; None for anything else."""
    if not KEY_FORMAT.fullmatch(key):  # also keeps NUL bytes away from PostgreSQL
        return None
    parts = key.split("_", 2)
    found = session.execute(
        select(ApiKey.key_hash, ApiKey.revoked_at, Tenant).join(Tenant, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_id == parts[1])
    ).first()
    if found is None or found.revoked_at is not None:
        return None
    if not hmac.compare_digest(found.key_hash, _hash(key)):
        return None
    return found.Tenant


def revoke_key(session: Session, key_id: str) -> bool:
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if api_key is None or api_key.revoked_at is not None:
        return False
    api_key.revoked_at = utcnow()
    return True


def list_keys(session: Session) -> list[tuple[ApiKey, Tenant]]:
    return [(key, tenant) for key, tenant in session.execute(
        select(ApiKey, Tenant).join(Tenant, ApiKey.tenant_id == Tenant.id).order_by(ApiKey.id)
    )]


def any_key_exists(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).limit(1)) is not None
