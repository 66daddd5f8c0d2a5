"""The GPU worker: Celery tasks that supervise a training process per run."""
