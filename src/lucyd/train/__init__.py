"""lucyd.train (being written)."""
