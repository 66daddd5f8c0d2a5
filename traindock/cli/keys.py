"""`traindock keys ...`, and the first key that `traindock up` makes on a fresh data dir."""

import os
from typing import Annotated

import typer

from db.engine import session_scope
from db.tenants import any_key_exists, issue_key, list_keys, revoke_key
from traindock.cli.client import CliError
from traindock.settings import Settings


def key_file(settings: Settings):
    return settings.root / "api-key"


def saved_key(settings: Settings) -> str | None:
    """The key the CLI sends: TRAINDOCK_API_KEY, else the one `traindock up` saved."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    path = key_file(settings)
    return path.read_text().strip() if path.is_file() else None


def save_key(settings: Settings, secret: str) -> None:
    path = key_file(settings)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)  # the mode of os.open applies only to a file it creates
    with os.fdopen(descriptor, "w") as out:
        out.write(secret + "\n")


def ensure_first_key(settings: Settings) -> None:
    """On a data dir without any key: a key for tenant 'default', printed once and saved where
    the CLI finds it, so the quickstart works without a step of its own."""
    with session_scope() as session:
        if any_key_exists(session):
            return
        issued = issue_key(session, "default")
    save_key(settings, issued.secret)
    print(f"created API key {issued.key_id} for tenant 'default' (saved to {key_file(settings)}):\n"
          f"  {issued.secret}\nsend it as 'Authorization: Bearer <key>'", flush=True)


app = typer.Typer(help="Create, revoke and list API keys.", no_args_is_help=True)


@app.command()
def create(tenant: Annotated[str, typer.Option(help="Tenant name (created if new).")]):
    """Create a key for a tenant; the secret is shown once."""
    with session_scope() as session:
        issued = issue_key(session, tenant)
    print(f"API key {issued.key_id} for tenant '{issued.tenant}' (shown once, stored only as a hash):")
    print(issued.secret)


@app.command()
def revoke(key_id: str):
    """Revoke a key by its id."""
    with session_scope() as session:
        if not revoke_key(session, key_id):
            raise CliError(f"no active key with id {key_id}")
    print(f"revoked key {key_id}")


@app.command("list")
def show():
    """List keys (ids and tenants, never secrets)."""
    with session_scope() as session:
        for key, tenant in list_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            print(f"{key.key_id}  {tenant.name:<20} created {key.created_at:%Y-%m-%d %H:%M}  {state}")
