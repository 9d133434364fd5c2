"""`lucyd evaluate` (being written)."""
