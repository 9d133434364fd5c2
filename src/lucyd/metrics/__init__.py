"""lucyd.metrics (being written)."""
