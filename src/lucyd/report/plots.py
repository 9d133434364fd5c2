"""Curves (PSNR against iterations, quality against photon count or blur, losses), bar
charts and pictures of tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lucyd.errors import InputError
from lucyd.report.canvas import DEFAULT_DPI, new_figure, save_figure
from lucyd.report.tables import format_value, is_numeric, normalize_rows

__all__ = ["save_bar_or_table_figure", "save_line_plot"]

_MARKER_CYCLE = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


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

