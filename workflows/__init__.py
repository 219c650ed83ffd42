"""Compositions of steps, the compiler to a Celery canvas, and the run operations."""
