"""A worker's life: the Celery signals it answers, the maintenance thread (heartbeat,
relay, reconciler) and the `inspect steps` remote command."""
