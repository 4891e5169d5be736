"""What producers and workers agree on: job models, tables, settings, config, the catalog, Redis key names,
the queue protocol and the error taxonomy."""
