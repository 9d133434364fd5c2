"""Network 'care' (being written)."""
