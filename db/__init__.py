"""Persistence: models, the step state machine, the claim protocol and all SQL."""
