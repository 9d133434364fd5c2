"""`lucyd psf` (being written)."""
