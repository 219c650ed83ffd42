"""Operating on runs: start, resume, retry, cancel (one transaction each, with its
dispatch intent), the relay that publishes intents, admission and retention."""
