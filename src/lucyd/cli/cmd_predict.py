"""`lucyd predict` (being written)."""
