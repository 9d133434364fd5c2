"""lucyd.deconv (being written)."""
