"""Webhook sending, in the thread-pool worker that consumes the `webhooks` queue (`traindock
worker` starts one beside itself): a delivery task claims its delivery, posts it signed, and
records the attempt; when a delivery is settled the next one of its (endpoint, job) goes out.
The database is the queue: this worker's loop sends again what is due (retries after their
backoff) or was lost on the way (never sent, or sent and never taken)."""

import json
import logging
import threading
import time
from datetime import timedelta

from db.clock import database_now
from db.engine import session_scope
from db.delivery_outbox import dispatch_deliveries, send_due_deliveries
from db.webhook_deliveries import claim_delivery, next_in_chain, record_attempt
from db.webhooks import PENDING
from traindock.settings import get_settings
from traindock.webhook_http import post
from traindock.webhook_signing import signed_headers

log = logging.getLogger(__name__)


def deliver(delivery_id: int) -> str:
    settings = get_settings()
    with session_scope() as session:
        claimed = claim_delivery(session, delivery_id)
    if claimed is None:
        return "not due"
    body = json.dumps(claimed.payload, separators=(",", ":")).encode()
    headers = signed_headers(claimed.secrets, f"msg_{delivery_id}", int(time.time()), body)
    outcome = post(claimed.url, body, headers, allow_private=settings.webhook_allow_private_urls,
                   timeout_s=settings.webhook_timeout_s)
    with session_scope() as session:
        delivery = record_attempt(session, delivery_id, outcome.as_record(), outcome.succeeded,
                                  retry_base_s=settings.webhook_retry_base_s, retry_for_s=settings.webhook_retry_for_s)
        following = next_in_chain(session, delivery) if delivery is not None and delivery.status != PENDING else None
        status = delivery.status if delivery is not None else "gone"
    if outcome.error:
        log.info("webhook delivery %s attempt %s: %s", delivery_id, claimed.attempt, outcome.error)
    if following is not None:
        dispatch_deliveries([following])
    return status


def send_due() -> list[int]:
    settings = get_settings()
    with session_scope() as session:
        now = database_now(session)
    return send_due_deliveries(now - timedelta(seconds=settings.redispatch_after_s))


def start_webhook_loop() -> threading.Thread:
    settings = get_settings()

    def loop() -> None:
        while True:
            try:
                send_due()
            except Exception:  # database or broker away: the next round looks again
                log.warning("could not look for due webhook deliveries", exc_info=True)
            threading.Event().wait(settings.recovery_interval_s)

    thread = threading.Thread(target=loop, name="traindock-webhooks", daemon=True)
    thread.start()
    return thread
