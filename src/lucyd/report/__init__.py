"""lucyd.report (being written)."""
