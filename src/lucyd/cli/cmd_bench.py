"""`lucyd bench` (being written)."""
