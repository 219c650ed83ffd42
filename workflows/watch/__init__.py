"""Following runs as they change: one watcher per process feeds every event stream."""
