"""`traindock keys ...`, and the first key that `traindock up` makes on a fresh data dir."""

import os
import sys

from db.engine import session_scope
from db.tenants import any_key_exists, issue_key, list_keys, revoke_key
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


def create(args) -> None:
    with session_scope() as session:
        issued = issue_key(session, args.tenant)
    print(f"API key {issued.key_id} for tenant '{issued.tenant}' (shown once, stored only as a hash):")
    print(issued.secret)


def revoke(args) -> None:
    with session_scope() as session:
        if not revoke_key(session, args.key_id):
            sys.exit(f"no active key with id {args.key_id}")
    print(f"revoked key {args.key_id}")


def show(_args) -> None:
    with session_scope() as session:
        for key, tenant in list_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            print(f"{key.key_id}  {tenant.name:<20} created {key.created_at:%Y-%m-%d %H:%M}  {state}")


def add_commands(commands) -> None:
    keys = commands.add_parser("keys", help="Create, revoke and list API keys.", description="API keys.")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    parser = sub.add_parser("create", help="Create a key for a tenant (created if new); shown once.")
    parser.add_argument("--tenant", required=True)
    parser.set_defaults(handler=create)
    parser = sub.add_parser("revoke", help="Revoke a key by its id.")
    parser.add_argument("key_id")
    parser.set_defaults(handler=revoke)
    sub.add_parser("list", help="List keys (ids and tenants, never secrets).").set_defaults(handler=show)
