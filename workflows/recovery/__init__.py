"""Putting runs the message flow lost back on track: the reconciler, and where a run's
messages are (held by live workers, or waiting in the queues)."""
