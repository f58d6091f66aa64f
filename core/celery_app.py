"""The one Celery app. Workers register tasks on it; the API only sends tasks by name."""

from celery import Celery

celery_app = Celery("switchboard")
celery_app.config_from_object("celeryconfig")
