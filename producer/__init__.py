"""The producer side: ingest JSONL, validate against the catalog, store and enqueue; the Python client and
the CLI."""
