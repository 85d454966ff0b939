"""The generation engine: sample ids -> synthetic masks -> generated images -> dataset shards."""
