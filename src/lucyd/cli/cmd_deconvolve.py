"""`lucyd deconvolve` (being written)."""
