"""`lucyd isotropic` (being written)."""
