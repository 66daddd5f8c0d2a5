"""Celery tasks. The task only delivers; worker/supervisor.py does the work."""

from traindock.broker import RUN_JOB_TASK
from worker.celery_app import app
from worker.supervisor import supervise


@app.task(name=RUN_JOB_TASK, bind=True)
def run_job(self, run_id: int) -> str:
    return supervise(run_id, worker_name=self.request.hostname or "worker")
