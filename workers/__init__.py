"""Celery workers: they call the providers and stream tokens back through Redis."""
