"""Verified API keys remembered in-process for a short time, so most requests skip the key lookup.
The price is bounded: a revoked key is still accepted for at most `ttl_s` after the process last
verified it (TRAINDOCK_API_KEY_CACHE_S)."""

import hashlib
import time

from db.models import Tenant

# A clock of its own so a test can move time on instead of sleeping.
now = time.monotonic
# Enough for every key a deployment has; a flood of distinct valid keys only empties it.
MAX_KEYS = 10_000


class KeyCache:
    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        # sha256 of the key (never the key itself) -> (tenant, when it stops being trusted)
        self._verified: dict[str, tuple[Tenant, float]] = {}

    def get(self, key: str) -> Tenant | None:
        found = self._verified.get(_digest(key))
        if found is None or found[1] <= now():
            return None
        return found[0]

    def put(self, key: str, tenant: Tenant) -> None:
        """Only valid keys are remembered: an invalid one is asked about every time, so guessing
        cannot fill the cache and a refusal is never stale."""
        if self.ttl_s <= 0:
            return
        if len(self._verified) >= MAX_KEYS:
            self._verified.clear()
        self._verified[_digest(key)] = (tenant, now() + self.ttl_s)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
