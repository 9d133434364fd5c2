"""Figure basics: a matplotlib Figure on the Agg canvas, atomic saving, embedding as data URIs.

Every figure is drawn on a :class:`matplotlib.figure.Figure` attached to the Agg canvas
directly, never through :mod:`matplotlib.pyplot`: no display is needed, no global figure state
is touched and the user's interactive backend is left alone. Every file is written through
:func:`lucyd.io.atomic.atomic_path`.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lucyd import __version__
from lucyd.errors import FileFormatError, InputError
from lucyd.io.atomic import atomic_path

__all__ = ["DEFAULT_DPI", "figure_to_data_uri", "image_bytes", "new_figure", "save_figure"]

#: default resolution of saved figures (dots per inch)
DEFAULT_DPI = 150


def new_figure(width: float, height: float, dpi: int = DEFAULT_DPI) -> Figure:
    """A figure of ``width`` × ``height`` inches on the Agg canvas (no pyplot, no display)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int | None = None) -> Path:
    """Write ``fig`` atomically; the format follows the suffix (PNG when there is none).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to save.
    path : str or Path
        Output file (``.png``, ``.svg``, ``.pdf``, ...).
    dpi : int or None
        Resolution; None keeps the figure's own.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    kwargs: dict = {"format": fmt, "dpi": dpi or fig.dpi, "facecolor": "white"}
    if fmt == "png":
        kwargs["metadata"] = {"Software": f"lucyd {__version__}"}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


_MIME_BY_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:2048].lower()):
        return "image/svg+xml"
    raise InputError("image bytes: not a PNG, JPEG, GIF, WebP or SVG image")


def image_bytes(source) -> tuple[bytes, str]:
    """Bytes and MIME type of an image given as a path, raw bytes or a matplotlib Figure.

    Figures are rendered to PNG at their own dpi.
    """
    if isinstance(source, Figure):
        if source.canvas is None or not isinstance(source.canvas, FigureCanvasAgg):
            FigureCanvasAgg(source)
        buf = io.BytesIO()
        source.savefig(buf, format="png", dpi=source.dpi, facecolor="white")
        return buf.getvalue(), "image/png"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data, _sniff_mime(data)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileFormatError(f"image file not found: {path}")
        data = path.read_bytes()
        mime = _MIME_BY_SUFFIX.get(path.suffix.lower())
        try:
            sniffed = _sniff_mime(data)
        except InputError:
            raise FileFormatError(f"{path}: not a PNG, JPEG, GIF, WebP or SVG image") from None
        return data, mime if mime == sniffed else sniffed
    raise InputError(
        "image: expected a file path, PNG bytes or a matplotlib Figure, "
        f"got {type(source).__name__}"
    )


def figure_to_data_uri(path_or_fig) -> str:
    """Embed an image as a ``data:`` URI (``data:image/png;base64,...``).

    Parameters
    ----------
    path_or_fig : str, Path, bytes or matplotlib.figure.Figure
        An image file (PNG, JPEG, GIF, WebP, SVG; the type is read from the
        content), encoded image bytes, or a figure (rendered to PNG).

    Returns
    -------
    str
        A URI that browsers display without any network or file access.
    """
    data, mime = image_bytes(path_or_fig)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

