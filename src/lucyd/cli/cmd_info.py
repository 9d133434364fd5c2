"""`lucyd info` (being written)."""
