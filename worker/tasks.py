"""Celery tasks. The tasks only deliver; worker/supervisor.py and worker/webhooks.py do the work."""

from traindock.broker import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK
from worker.celery_app import app
from worker.supervisor import supervise
from worker.webhooks import deliver


@app.task(name=RUN_JOB_TASK, bind=True)
def run_job(self, run_id: int) -> str:
    return supervise(run_id, worker_name=self.request.hostname or "worker")


@app.task(name=DELIVER_WEBHOOK_TASK)
def deliver_webhook(delivery_id: int) -> str:
    return deliver(delivery_id)
