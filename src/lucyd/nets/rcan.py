"""Network 'rcan' (being written)."""
