"""The HTTP API: a thin FastAPI layer over `workflows` operations and the `db` repository."""
