"""The worker's Celery app: the shared configuration plus the tasks."""

from traindock.broker import make_celery
from traindock.settings import get_settings

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]
