"""`lucyd train` (being written)."""
