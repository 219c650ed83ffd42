"""The durable-step engine: the `@step` decorator and task base, the step spec, the
sync/async bridge, the lease heartbeat, retry policy, worker hooks and `inspect steps`."""
