"""Network 'ddn' (being written)."""
