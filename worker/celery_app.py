"""The worker's Celery app: the shared configuration plus the tasks, and the watch for lost
attempts that every worker runs."""

from celery.signals import worker_ready

from traindock.broker import make_celery
from traindock.settings import get_settings

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]


@worker_ready.connect
def _watch_for_lost_runs(sender=None, **_kwargs) -> None:
    from worker.recovery import start_recovery_thread

    start_recovery_thread(app)
