"""Pictures and self-contained HTML reports for restorations and benchmarks.

* :func:`save_panel_figure` — raw / restored / ground-truth panels side by side,
  xy and xz views, one shared display range, scale bar in µm, colourbar.
* :func:`save_line_plot` — PSNR against iterations, quality against photon count
  or blur width, loss curves.
* :func:`save_bar_or_table_figure` — a bar chart or a picture of a metrics table.
* :func:`write_html_report` — one HTML file with every image embedded.
* :func:`format_table`, :func:`print_metrics_table` — tables for the terminal.

Figures use matplotlib's Agg canvas directly (no display, no pyplot state). Modules:
``canvas`` (figure basics), ``panels`` (image panels), ``plots`` (curves, bars, tables),
``display`` (display ranges, scale bars), ``html``, ``tables``; ``figures`` re-exports the
figure functions under their pre-split module name.
"""

from __future__ import annotations

from lucyd.report.canvas import figure_to_data_uri, new_figure, save_figure
from lucyd.report.display import (
    DEFAULT_PERCENTILES,
    brightest_index,
    clipped_fractions,
    compute_display_range,
    format_length,
    nice_scale_bar_length,
    shared_display_range,
    view_extents,
)
from lucyd.report.html import ReportSection, render_html_report, write_html_report
from lucyd.report.panels import describe_panel_figure, panel_figure, save_panel_figure
from lucyd.report.plots import save_bar_or_table_figure, save_line_plot
from lucyd.report.tables import format_table, format_value, print_metrics_table

__all__ = [
    "DEFAULT_PERCENTILES",
    "ReportSection",
    "brightest_index",
    "clipped_fractions",
    "compute_display_range",
    "describe_panel_figure",
    "figure_to_data_uri",
    "format_length",
    "format_table",
    "format_value",
    "new_figure",
    "nice_scale_bar_length",
    "panel_figure",
    "print_metrics_table",
    "render_html_report",
    "save_bar_or_table_figure",
    "save_figure",
    "save_line_plot",
    "save_panel_figure",
    "shared_display_range",
    "view_extents",
    "write_html_report",
]
