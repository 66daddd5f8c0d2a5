"""The Celery app as both sides configure it. Messages are sent by task name through
`producer()`; the worker registers the tasks on its own app (worker/celery_app.py). No worker code
is imported here."""

import json
from functools import lru_cache

from celery import Celery

from traindock.settings import Settings, get_settings

RUN_JOB_TASK = "traindock.run_job"
DELIVER_WEBHOOK_TASK = "traindock.deliver_webhook"
# Webhook deliveries have a queue of their own, consumed by a thread-pool worker beside each GPU
# worker (`traindock worker` starts one), so no receiver waits for a training job, and no
# training job for a receiver.
WEBHOOK_QUEUE = "webhooks"


def run_task_id(run_id: int) -> str:
    """A run's Celery task id is derived from it, so a queued run can be revoked by id."""
    return f"run-{run_id}"


def send_run(app: Celery, run_id: int, queue: str) -> None:
    app.send_task(RUN_JOB_TASK, args=[run_id], queue=queue, task_id=run_task_id(run_id))


def send_delivery(app: Celery, delivery_id: int) -> None:
    app.send_task(DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=WEBHOOK_QUEUE)


def queued_task_ids(app: Celery, queue: str) -> set[str] | None:
    """Ids of the task messages the broker holds for `queue` (waiting, or delivered to a worker
    and not yet acknowledged), or None where the broker cannot lose them (the filesystem broker's
    queue is the data folder). Redis without persistence forgets everything when it restarts:
    what was sent is then gone, and the database must send it again."""
    with app.connection_for_read() as connection:
        if connection.transport.driver_type != "redis":
            return None
        channel = connection.default_channel
        waiting = [json.loads(raw) for raw in channel.client.lrange(queue, 0, -1)]
        delivered = [json.loads(raw)[0] for raw in channel.client.hvals(channel.unacked_key)]
        return {message.get("headers", {}).get("id") for message in waiting + delivered}


@lru_cache
def producer() -> Celery:
    """This process's app for sending and revoking (the API's, the supervisor's, the recovery's)."""
    return make_celery(get_settings())


def make_celery(settings: Settings) -> Celery:
    app = Celery("traindock", broker=settings.effective_broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        # Long GPU jobs: acknowledge on receipt (late acks + the Redis visibility timeout would
        # deliver a long job again while it runs), reserve nothing extra, one job per worker.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,
        worker_concurrency=1,
        task_default_queue=settings.default_queue,
        broker_connection_retry_on_startup=True,
    )
    if settings.uses_filesystem_broker:
        folder = settings.broker_folder
        app.conf.broker_transport = "traindock.fs_transport:Transport"
        app.conf.broker_transport_options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "processed_folder": str(folder / "processed"),
            "polling_interval": settings.broker_polling_interval_s,
        }
    return app
