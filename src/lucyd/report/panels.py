"""Side-by-side image panels (raw / restored / ground truth): xy and xz views, one shared
display range, scale bar in µm, colourbar, clipping report."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lucyd.errors import InputError
from lucyd.report.canvas import DEFAULT_DPI, new_figure, save_figure
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
from lucyd.report.tables import format_value
from lucyd.validation import as_voxel_size

__all__ = ["describe_panel_figure", "panel_figure", "save_panel_figure"]

_VIEWS = ("xy", "xz")
_OUTLINE = [patheffects.withStroke(linewidth=2.0, foreground="black")]
_GUIDE_COLOUR = "#4dd0e1"


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
    dpi: int = DEFAULT_DPI,
    **figure_options,
) -> Path:
    """Side-by-side image panels with one shared contrast, scale bar and colourbar.

    One column per panel (e.g. raw / RL / WB / RLN / ground truth) in the order
    given; one row per view: 3D stacks show an ``xy`` and an ``xz`` slice, 2D
    images one row. The figure is drawn by :func:`panel_figure`, which takes and
    documents every keyword of ``figure_options`` (``voxel_size``, ``title``,
    ``display_range``, ``percentiles``, ``reference``, ``views``, ``z_index``,
    ``y_index``, ``cmap``, ``panel_width``, ``intensity_label``, ``caption``,
    ``show_caption``), and written atomically at ``dpi`` (PNG unless ``path``
    has another suffix).

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
    # panel_figure checks the keywords: an unknown one is a TypeError naming it
    fig = panel_figure(panels, dpi=dpi, **figure_options)
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
