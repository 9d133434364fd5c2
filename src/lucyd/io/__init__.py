"""Image input/output with metadata (filled in by the I/O module)."""

from lucyd.io.atomic import atomic_path

__all__ = ["atomic_path"]
