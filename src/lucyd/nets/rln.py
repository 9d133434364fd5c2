"""Network 'rln' (being written)."""
