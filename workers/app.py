"""Entry point for `celery -A workers.app`: the shared app with every task module imported."""

from core.celery_app import celery_app
from core.logging import configure_logging

configure_logging()

app = celery_app
