"""lucyd.synth (being written)."""
