"""`lucyd synth` (being written)."""
