"""Pipeline stages: plain typed functions made durable Celery tasks by `@step`."""
