"""Figures for reports: the public names of :mod:`lucyd.report.canvas` (basics),
:mod:`lucyd.report.panels` (image panels) and :mod:`lucyd.report.plots` (curves, bars,
tables), importable from here as before the split.
"""

from __future__ import annotations

from lucyd.report.canvas import (
    DEFAULT_DPI,
    figure_to_data_uri,
    image_bytes,
    new_figure,
    save_figure,
)
from lucyd.report.panels import describe_panel_figure, panel_figure, save_panel_figure
from lucyd.report.plots import save_bar_or_table_figure, save_line_plot

__all__ = [
    "DEFAULT_DPI",
    "describe_panel_figure",
    "figure_to_data_uri",
    "image_bytes",
    "new_figure",
    "panel_figure",
    "save_bar_or_table_figure",
    "save_figure",
    "save_line_plot",
    "save_panel_figure",
]
