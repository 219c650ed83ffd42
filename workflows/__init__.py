"""Everything above a single step, by concern:

- `definition/`: what a workflow is (the canvas vocabulary, `Workflow`, the compiler to a
  Celery canvas, the map expander, the registry and the shipped workflows);
- `runs/`: operating on runs (start, resume, retry, cancel; dispatch and the outbox relay;
  admission; retention);
- `recovery/`: the reconciler and where a run's messages are;
- `watch/`: following runs as they change (the event stream);
- `worker/`: a worker's life (its signals, the maintenance thread, `inspect steps`).
"""
