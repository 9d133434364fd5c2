"""`lucyd demo` (being written)."""
