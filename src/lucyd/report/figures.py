"""Figures for reports: side-by-side image panels, curves, bar charts and tables.

Every figure is drawn on a :class:`matplotlib.figure.Figure` attached to the Agg
canvas directly, never through :mod:`matplotlib.pyplot`: no display is needed, no
global figure state is touched and the user's interactive backend is left alone.
Every file is written through :func:`lucyd.io.atomic.atomic_path`.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lucyd.errors import FileFormatError, InputError
from lucyd.io.atomic import atomic_path
from lucyd.report.display import (
    DEFAULT_PERCENTILES,
    as_panels,
    brightest_index,
    clipped_fractions,
    format_length,
    nice_scale_bar_length,
    resolve_reference,
    shared_display_range,
    view_extents,
)
from lucyd.report.tables import format_value, is_numeric, normalize_rows
from lucyd.validation import as_voxel_size

__all__ = [
    "describe_panel_figure",
    "figure_to_data_uri",
    "new_figure",
    "panel_figure",
    "save_bar_or_table_figure",
    "save_figure",
    "save_line_plot",
    "save_panel_figure",
]

#: default resolution of saved figures (dots per inch)
DEFAULT_DPI = 150

_VIEWS = ("xy", "xz")
_MARKER_CYCLE = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_OUTLINE = [patheffects.withStroke(linewidth=2.0, foreground="black")]
_GUIDE_COLOUR = "#4dd0e1"


# ----------------------------------------------------------------------------- basics


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
    from lucyd import __version__

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


# ----------------------------------------------------------------------------- panel figure


def _percent(value: float) -> str:
    pct = 100.0 * value
    if pct == 0:
        return "0"
    if pct < 0.01:
        return "<0.01"
    return f"{pct:.2g}"


def _slice_indices(
    shape: tuple[int, ...],
    reference: np.ndarray,
    z_index: int | None,
    y_index: int | None,
) -> tuple[int | None, int | None]:
    if len(shape) == 2:
        if z_index is not None:
            raise InputError("z_index: only meaningful for 3D (z, y, x) panels")
        return None, None
    nz, ny = shape[0], shape[1]
    if z_index is None:
        z_index = brightest_index(reference, axis=0)
    if y_index is None:
        y_index = brightest_index(reference, axis=1)
    for name, value, n in (("z_index", z_index, nz), ("y_index", y_index, ny)):
        if not -n <= int(value) < n:
            raise InputError(f"{name}: {value} is outside the stack (size {n})")
    return int(z_index) % nz, int(y_index) % ny


def describe_panel_figure(
    panels: Mapping[str, np.ndarray],
    *,
    voxel_size=None,
    display_range: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    reference: str | int | None = None,
    z_index: int | None = None,
    y_index: int | None = None,
) -> str:
    """The caption :func:`save_panel_figure` prints under the panels (also for HTML reports).

    It states the shared display range and where it came from, the share of
    pixels of each panel shown saturated (below / above the range), the slices
    shown, the voxel size and the scale-bar length. Parameters are those of
    :func:`save_panel_figure`.
    """
    arrays = as_panels(panels)
    info = _panel_layout_info(
        arrays, voxel_size, display_range, percentiles, reference, z_index, y_index
    )
    return info["caption"]


def _panel_layout_info(arrays, voxel_size, display_range, percentiles, reference, z_index, y_index):
    names = list(arrays)
    shape = next(iter(arrays.values())).shape
    ndim = len(shape)
    vox = as_voxel_size(voxel_size, ndim) if voxel_size is not None else None
    lo, hi, ref_name = shared_display_range(
        arrays, reference=reference, display_range=display_range, percentiles=percentiles
    )
    ref_for_slices = arrays[resolve_reference(names, reference)]
    zi, yi = _slice_indices(shape, ref_for_slices, z_index, y_index)
    unit = "µm" if vox is not None else "px"
    width = shape[-1] * (vox[-1] if vox else 1.0)
    bar = nice_scale_bar_length(width)

    if ref_name is None:
        source = "given"
    else:
        source = f"{percentiles[0]:g}–{percentiles[1]:g} percentiles of '{ref_name}'"
    clip = [clipped_fractions(arrays[n], lo, hi) for n in names]
    clip_text = ", ".join(
        f"{n} {_percent(b)}/{_percent(a)}" for n, (b, a) in zip(names, clip, strict=True)
    )
    parts = [
        f"Display range {format_value(lo)} to {format_value(hi)} for every panel ({source}); "
        f"% of pixels shown saturated (below/above): {clip_text}."
    ]
    if ndim == 3:
        if vox is not None:
            parts.append(
                f"xy at z = {zi} ({zi * vox[0]:.3g}\u00a0µm), xz at y = {yi} "
                f"({yi * vox[1]:.3g}\u00a0µm), "
                "z = 0 at the top of the xz views, drawn to scale."
            )
        else:
            parts.append(f"xy at z = {zi}, xz at y = {yi}; z = 0 at the top of the xz views.")
    if vox is not None:
        axes = "(z, y, x)" if ndim == 3 else "(y, x)"
        vtxt = ", ".join(f"{v:.4g}" for v in vox)
        parts.append(f"Voxel size {axes} = ({vtxt})\u00a0µm; scale bar {format_length(bar, unit)}.")
    else:
        parts.append(f"Voxel size unknown: axes in pixels; scale bar {format_length(bar, unit)}.")
    return {
        "names": names,
        "shape": shape,
        "vox": vox,
        "lo": lo,
        "hi": hi,
        "ref_name": ref_name,
        "z": zi,
        "y": yi,
        "unit": unit,
        "bar": bar,
        "clip": clip,
        "caption": " ".join(parts),
    }


def _draw_scale_bar(ax, extent, length: float, label: str) -> None:
    left, right, bottom, top = extent  # bottom > top (y grows downwards)
    width, height = right - left, bottom - top
    thickness = max(0.012 * width, 0.02 * min(width, height))
    margin = 0.05 * width
    x0 = right - margin - length
    y0 = bottom - margin - thickness
    ax.add_patch(
        Rectangle(
            (x0, y0),
            length,
            thickness,
            facecolor="white",
            edgecolor="black",
            linewidth=0.6,
            zorder=5,
        )
    )
    ax.text(
        x0 + length / 2,
        y0 - 0.5 * thickness,
        label,
        color="white",
        ha="center",
        va="bottom",
        fontsize=8,
        fontweight="bold",
        zorder=6,
        path_effects=_OUTLINE,
    )


def _draw_guides(ax, extent, position: float) -> None:
    """Short ticks at both edges marking where the orthogonal view cuts this one."""
    left, right, _, _ = extent
    tick = 0.04 * (right - left)
    for a, b in ((left, left + tick), (right - tick, right)):
        ax.plot([a, b], [position, position], color=_GUIDE_COLOUR, linewidth=1.2, zorder=4)


def save_panel_figure(
    panels: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    voxel_size=None,
    title: str | None = None,
    display_range: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    reference: str | int | None = None,
    views: Sequence[str] = _VIEWS,
    z_index: int | None = None,
    y_index: int | None = None,
    cmap: str | Colormap = "magma",
    dpi: int = DEFAULT_DPI,
    panel_width: float = 2.2,
    intensity_label: str = "intensity",
    caption: str | None = None,
    show_caption: bool = True,
) -> Path:
    """Side-by-side image panels with one shared contrast, scale bar and colourbar.

    One column per panel (e.g. raw / RL / WB / RLN / ground truth) in the order
    given; one row per view: 3D stacks show an ``xy`` and an ``xz`` slice, 2D
    images one row. The figure is drawn by :func:`panel_figure`, whose docstring
    describes every keyword, and written atomically (PNG unless ``path`` has
    another suffix).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> save_panel_figure(  # doctest: +SKIP
    ...     {"raw": raw, "RL": rl, "RLN": rln, "ground truth": gt},
    ...     "figure.png", voxel_size=(0.3, 0.1, 0.1), title="Synthetic nuclei")
    """
    fig = panel_figure(
        panels,
        voxel_size=voxel_size,
        title=title,
        display_range=display_range,
        percentiles=percentiles,
        reference=reference,
        views=views,
        z_index=z_index,
        y_index=y_index,
        cmap=cmap,
        dpi=dpi,
        panel_width=panel_width,
        intensity_label=intensity_label,
        caption=caption,
        show_caption=show_caption,
    )
    return save_figure(fig, path, dpi=dpi)


def panel_figure(
    panels: Mapping[str, np.ndarray],
    *,
    voxel_size=None,
    title: str | None = None,
    display_range: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    reference: str | int | None = None,
    views: Sequence[str] = _VIEWS,
    z_index: int | None = None,
    y_index: int | None = None,
    cmap: str | Colormap = "magma",
    dpi: int = DEFAULT_DPI,
    panel_width: float = 2.2,
    intensity_label: str = "intensity",
    caption: str | None = None,
    show_caption: bool = True,
) -> Figure:
    """Draw the panel figure of :func:`save_panel_figure` and return it unsaved.

    One column per panel (e.g. raw / RL / WB / RLN / ground truth) in the order
    given; one row per view. 3D stacks show an ``xy`` slice and an ``xz`` slice;
    2D images show one row.

    Parameters
    ----------
    panels : mapping of str to array_like
        ``{label: image}``; all (y, x) or all (z, y, x), same shape, finite.
    voxel_size : float or sequence of float, optional
        Voxel size in µm, (z, y, x) or (y, x). With it the scale bar is in µm and
        the xz views are drawn with the true aspect ratio (imshow ``extent`` in µm,
        ``aspect="equal"``); without it, everything is in pixels.
    title : str, optional
        Figure title.
    display_range : (float, float), optional
        Explicit (low, high) display range for every panel.
    percentiles : (float, float)
        When ``display_range`` is None, the range is these percentiles of all the
        voxels of the reference panel (default 0.1 and 99.9).
    reference : str or int, optional
        Panel that sets the range and the default slices; default the last panel
        (by convention the ground truth).
    views : sequence of {"xy", "xz"}
        Views (rows) for 3D panels; ignored for 2D (always ``xy``).
    z_index, y_index : int, optional
        Slices for the xy and xz views. Default: the slice of largest total
        intensity of the reference panel (ties: the middle one).
    cmap : str or Colormap
        Colour map (``"magma"`` by default; ``"gray"`` for a classic look).
    dpi : int
        Resolution of the figure.
    panel_width : float
        Width of one panel in inches.
    intensity_label : str
        Colourbar label (intensities are shown in the images' own units).
    caption : str, optional
        Extra sentence appended to the automatic caption.
    show_caption : bool
        Print the caption under the panels (turn off when the caption is shown
        beside the picture, e.g. in an HTML report via :func:`describe_panel_figure`).

    Returns
    -------
    matplotlib.figure.Figure
        On the Agg canvas; image axes carry the panel name as their label
        (``ax.get_label() == "<name>:<view>"``).

    Notes
    -----
    The display range is never stretched per panel: every panel is drawn with the
    same ``Normalize(low, high)``, so a brighter or dimmer restoration looks
    brighter or dimmer. Values outside the range are clipped only in the display;
    the colourbar has arrows when a panel has such values, and the caption gives
    the range and the share of saturated pixels per panel
    (:func:`describe_panel_figure`). Thin cyan ticks at the image edges mark where
    the xy and xz views cut each other.
    """
    arrays = as_panels(panels)
    views = tuple(views)
    bad = [v for v in views if v not in _VIEWS]
    if bad or not views:
        raise InputError(f"views: expected a non-empty subset of {_VIEWS}, got {views}")
    info = _panel_layout_info(
        arrays, voxel_size, display_range, percentiles, reference, z_index, y_index
    )
    ndim = len(info["shape"])
    rows = ("xy",) if ndim == 2 else views
    extents = view_extents(info["shape"], info["vox"])
    names = info["names"]
    lo, hi = info["lo"], info["hi"]
    colormap = colormaps[cmap] if isinstance(cmap, str) else cmap
    norm = Normalize(vmin=lo, vmax=hi, clip=False)

    # --- layout in inches
    width_units = extents["xy"][1]
    heights = [panel_width * extents[r][2] / width_units for r in rows]
    n = len(names)
    left_m, gap_x, gap_y = 0.55, 0.08, 0.12
    top_m = 0.35 + (0.35 if title else 0.0)
    cbar_gap, cbar_w, cbar_labels = 0.15, 0.14, 0.95
    fig_w = left_m + n * panel_width + (n - 1) * gap_x + cbar_gap + cbar_w + cbar_labels
    full_caption = info["caption"] + (f" {caption}" if caption else "")
    wrap = max(40, int(fig_w * 15))
    caption_lines = textwrap.wrap(full_caption, wrap) if show_caption else []
    bottom_m = 0.1 + 0.15 * len(caption_lines)
    image_h = sum(heights) + gap_y * (len(rows) - 1)
    fig_h = top_m + image_h + bottom_m
    fig = new_figure(fig_w, fig_h, dpi=dpi)

    bar_label = format_length(info["bar"], info["unit"])
    y_cursor = fig_h - top_m
    for r, row in enumerate(rows):
        h = heights[r]
        y_cursor -= h
        extent = extents[row]
        for c, name in enumerate(names):
            arr = arrays[name]
            if ndim == 2:
                view = arr
            elif row == "xy":
                view = arr[info["z"]]
            else:
                view = arr[:, info["y"], :]
            x0 = left_m + c * (panel_width + gap_x)
            ax = fig.add_axes(
                (x0 / fig_w, y_cursor / fig_h, panel_width / fig_w, h / fig_h),
                label=f"{name}:{row}",
            )
            ax.imshow(
                view,
                cmap=colormap,
                norm=norm,
                extent=extent,
                origin="upper",
                aspect="equal",
                interpolation="antialiased",
            )
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.5)
            if ndim == 3:
                vox = info["vox"] or (1.0, 1.0, 1.0)
                if row == "xy" and "xz" in rows:
                    _draw_guides(ax, extent, (info["y"] + 0.5) * vox[1])
                elif row == "xz" and "xy" in rows:
                    _draw_guides(ax, extent, (info["z"] + 0.5) * vox[0])
            if r == 0:
                ax.set_title(name, fontsize=10, pad=4)
            if c == 0:
                if row == "xy":
                    label = f"xy (z = {info['z']})"
                else:
                    label = f"xz (y = {info['y']})"
                if ndim == 3:
                    ax.set_ylabel(label, fontsize=8)
                # the bar goes on every row tall enough to hold it legibly
                if row == "xy" or extent[2] >= 0.25 * extent[1]:
                    _draw_scale_bar(ax, extent, info["bar"], bar_label)
        y_cursor -= gap_y

    # --- shared colourbar spanning all rows
    above = any(a > 0 for _, a in info["clip"])
    below = any(b > 0 for b, _ in info["clip"])
    extend = {(True, True): "both", (False, True): "max", (True, False): "min"}.get(
        (below, above), "neither"
    )
    cx = left_m + n * panel_width + (n - 1) * gap_x + cbar_gap
    cax = fig.add_axes(
        (cx / fig_w, (fig_h - top_m - image_h) / fig_h, cbar_w / fig_w, image_h / fig_h)
    )
    mappable = ScalarMappable(norm=norm, cmap=colormap)
    cbar = fig.colorbar(mappable, cax=cax, extend=extend)
    cbar.set_label(intensity_label, fontsize=8)
    cbar.ax.tick_params(labelsize=7)

    if title:
        fig.text(0.5, 1 - 0.3 / fig_h, title, ha="center", va="center", fontsize=12)
    if caption_lines:
        fig.text(
            left_m / fig_w,
            0.1 / fig_h,
            "\n".join(caption_lines),
            ha="left",
            va="bottom",
            fontsize=7.5,
            color="#333333",
            linespacing=1.35,
        )
    return fig


# ----------------------------------------------------------------------------- curves


def _series_arrays(name: str, xy) -> tuple[np.ndarray, np.ndarray]:
    try:
        x, y = xy
    except (TypeError, ValueError):
        raise InputError(f"series[{name!r}]: expected a pair (x, y)") from None
    try:
        x = np.asarray(x, dtype=float).ravel()
        y = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputError(f"series[{name!r}]: x and y must be numeric") from None
    if x.size == 0 or x.size != y.size:
        raise InputError(
            f"series[{name!r}]: x and y must be non-empty and of equal length, "
            f"got {x.size} and {y.size}"
        )
    return x, y


def _marker_for(markers, index: int, name: str, npoints: int) -> str | None:
    if markers is None:
        return _MARKER_CYCLE[index % len(_MARKER_CYCLE)] if npoints <= 30 else None
    if markers is True:
        return _MARKER_CYCLE[index % len(_MARKER_CYCLE)]
    if markers is False:
        return None
    if isinstance(markers, str):
        return markers
    if isinstance(markers, Mapping):
        return markers.get(name)
    raise InputError(
        f"markers: expected None, a bool, a marker string or a mapping, got {markers!r}"
    )


def save_line_plot(
    series: Mapping[str, tuple],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    markers=None,
    ylim: tuple[float, float] | None = None,
    legend_title: str | None = None,
    figsize: tuple[float, float] = (6.4, 4.2),
    dpi: int = DEFAULT_DPI,
) -> Path:
    """Curves of one quantity against another, one line per series.

    Used for PSNR against iteration, loss curves, and the "push it until it
    breaks" characterisation (quality against photon count or blur width, one
    curve per method; Chen et al. 2021, 3D-RCAN).

    Parameters
    ----------
    series : mapping of str to (x, y)
        ``{label: (x, y)}`` with 1D numeric x and y of equal length. NaN in y
        leaves a gap (e.g. a method that failed at that point).
    path : str or Path
        Output file, written atomically.
    xlabel, ylabel : str
        Axis labels, with units (e.g. ``"photons per pixel (peak)"``, ``"PSNR (dB)"``).
    title : str, optional
        Plot title.
    logx, logy : bool
        Logarithmic axes (photon counts are best shown with ``logx=True``).
    markers : None, bool, str or mapping
        None: a distinct marker per series when it has at most 30 points;
        True / False: always / never; a marker string for all; or
        ``{label: marker}``.
    ylim : (float, float), optional
        y-axis limits.
    legend_title : str, optional
        Title of the legend.
    figsize : (float, float)
        Size in inches.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(series, Mapping) or not series:
        raise InputError("series: expected a non-empty mapping {label: (x, y)}")
    fig = new_figure(*figsize, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, xy) in enumerate(series.items()):
        x, y = _series_arrays(str(name), xy)
        if logx and np.any(x[np.isfinite(x)] <= 0):
            raise InputError(f"series[{name!r}]: logx needs positive x values")
        marker = _marker_for(markers, i, str(name), x.size)
        ax.plot(x, y, marker=marker, markersize=4, linewidth=1.5, label=str(name))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if len(series) > 1 or legend_title:
        if len(series) > 6:
            ax.legend(title=legend_title, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(title=legend_title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)


# ----------------------------------------------------------------------------- bars / tables


def save_bar_or_table_figure(
    rows,
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    kind: str = "bar",
    label: str | None = None,
    values: Sequence[str] | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    dpi: int = DEFAULT_DPI,
) -> Path:
    """A grouped horizontal bar chart, or a picture of a table, from metric rows.

    Parameters
    ----------
    rows : list of dict, or (columns, list of sequences)
        e.g. ``[{"method": "RL", "psnr": 31.2, "ssim": 0.91}, ...]``.
    path : str or Path
        Output file, written atomically.
    columns : sequence of str, optional
        Columns to use and their order (default: all, in first-seen order).
    kind : {"bar", "table"}
        Bar chart of ``values`` per row, or the table itself as an image.
    label : str, optional
        Column naming each row (default: the first column).
    values : sequence of str, optional
        Numeric columns drawn as bars (default: every other numeric column).
        Put metrics with similar ranges together (PSNR and SSIM differ by 100×).
    title, xlabel : str, optional
        Title and value-axis label.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``path``.
    """
    cols, data = normalize_rows(rows, columns)
    if kind not in ("bar", "table"):
        raise InputError(f"kind: expected 'bar' or 'table', got {kind!r}")
    if kind == "table":
        cell_text = [[format_value(r.get(c), c) for c in cols] for r in data]
        numeric_cols = [any(is_numeric(r.get(c)) for r in data) for c in cols]
        width = max(3.0, 1.25 * len(cols))
        title_h = 0.35 if title else 0.0
        table_h = 0.25 * (len(data) + 1)
        height = table_h + title_h + 0.1
        fig = new_figure(width, height, dpi=dpi)
        ax = fig.add_axes((0.02, 0.05 / height, 0.96, table_h / height))
        ax.axis("off")
        table = ax.table(cellText=cell_text, colLabels=cols, bbox=(0, 0, 1, 1))
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        for (row, col), cell in table.get_celld().items():
            cell.set_linewidth(0.5)
            if row == 0:
                cell.set_text_props(fontweight="bold")
                cell.set_facecolor("#eeeeee")
            cell.get_text().set_horizontalalignment("right" if numeric_cols[col] else "left")
            cell.PAD = 0.05
        if title:
            fig.text(0.5, 1 - 0.2 / height, title, ha="center", va="center", fontsize=10)
        return save_figure(fig, path, dpi=dpi)

    label = label or cols[0]
    if label not in cols:
        raise InputError(f"label: {label!r} is not one of the columns {cols}")

    def numeric(c: str) -> bool:
        vals = [r.get(c) for r in data]
        return all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in vals
            if v is not None
        ) and any(v is not None for v in vals)

    values = list(values) if values is not None else [c for c in cols if c != label and numeric(c)]
    if not values:
        raise InputError("values: no numeric column to draw as bars")
    for c in values:
        if c not in cols or not numeric(c):
            raise InputError(f"values: column {c!r} is missing or not numeric")
    names = [str(r.get(label, "")) for r in data]
    n, k = len(data), len(values)
    fig = new_figure(6.4, max(2.0, 0.9 + 0.3 * n * max(1, k) ** 0.7), dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    bar_h = 0.8 / k
    ypos = np.arange(n, dtype=float)
    for j, c in enumerate(values):
        vals = np.array([np.nan if r.get(c) is None else float(r[c]) for r in data])
        bars = ax.barh(ypos - 0.4 + (j + 0.5) * bar_h, vals, height=bar_h, label=c)
        for rect, v in zip(bars, vals, strict=True):
            if math.isfinite(v):
                ax.text(
                    rect.get_width(),
                    rect.get_y() + rect.get_height() / 2,
                    " " + format_value(v, c),
                    va="center",
                    fontsize=7,
                )
    ax.set_yticks(ypos, names)
    ax.invert_yaxis()
    ax.margins(x=0.15)
    if xlabel or k == 1:
        ax.set_xlabel(xlabel or values[0])
    if title:
        ax.set_title(title)
    if k > 1:
        ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)
