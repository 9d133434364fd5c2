"""Network 'rbcr' (being written)."""
