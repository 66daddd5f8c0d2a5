"""The worker's Celery app: the shared configuration plus the tasks, the watch for lost
attempts that every worker runs (the webhook sender's watch for due deliveries instead), and no
prefetch on every broker."""

import threading

from celery import bootsteps
from celery.signals import worker_process_init, worker_ready, worker_shutting_down
from celery.worker import state

from traindock.broker import make_celery
from traindock.settings import get_settings

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]
# Set by `traindock worker --queues webhooks` before it starts this process's worker.
SENDS_WEBHOOKS_ONLY = threading.Event()


class NoPrefetch(bootsteps.StartStopStep):
    """A busy worker reserves no further job, so an idle worker (or a cancel) gets it. Celery's
    worker_disable_prefetch does this for Redis only; this does the same for the embedded
    filesystem broker, whose channel polls through the same QoS check."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer) -> None:
        if consumer.connection.transport.driver_type == "redis":
            return
        qos = consumer.task_consumer.channel.qos
        can_consume = qos.can_consume

        def can_consume_when_idle() -> bool:
            return len(state.reserved_requests) < consumer.pool.num_processes and can_consume()

        qos.can_consume = can_consume_when_idle


app.steps["consumer"].add(NoPrefetch)


@worker_ready.connect
def _watch_for_lost_runs(sender=None, **_kwargs) -> None:
    if SENDS_WEBHOOKS_ONLY.is_set():
        from worker.webhooks import start_webhook_loop

        start_webhook_loop()
        return
    from worker.recovery import start_recovery_thread
    from worker.registry import start_registry_thread

    start_recovery_thread()
    start_registry_thread(sender.hostname, list(sender.app.amqp.queues.consume_from))


@worker_process_init.connect
def _start_a_spare_training_process(**_kwargs) -> None:
    """A pool process starts with its first job's training process already importing (worker/warm.py)."""
    from worker.supervisor import prepare_spare

    prepare_spare(get_settings())


@worker_shutting_down.connect
def _pass_on_shutdown(sender=None, how: str = "Warm", **_kwargs) -> None:
    from worker.drain import pass_on_shutdown
    from worker.registry import mark_stopped

    pass_on_shutdown(how)
    mark_stopped(sender)
