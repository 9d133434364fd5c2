"""Metric tables: number formatting shared by the terminal, the figures and the HTML report."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from lucyd.errors import InputError

__all__ = ["format_table", "format_value", "normalize_rows", "print_metrics_table"]

# (substring of a lower-case column name, format) — first match wins
_COLUMN_FORMATS: tuple[tuple[str, str], ...] = (
    ("psnr", ".2f"),  # dB
    ("snr", ".2f"),
    ("ssim", ".4f"),
    ("nrmse", ".4f"),
    ("rmse", ".4g"),
    ("pearson", ".4f"),
    ("corr", ".4f"),
)
_TIME_NAMES = ("time", "seconds", "duration", "runtime")


def _is_time_column(column: str) -> bool:
    return any(t in column for t in _TIME_NAMES) or column.endswith(("_s", "(s)"))


def format_value(value, column: str | None = None) -> str:
    """Text for one table cell.

    Parameters
    ----------
    value : object
        Number, string, None, ...
    column : str, optional
        Column name, which picks the precision: PSNR (and SNR) 2 decimals; SSIM,
        NRMSE and correlations 4 decimals; times (``time``, ``*_s``) 3 significant
        digits; other floats 4 significant digits; integers in full.

    Returns
    -------
    str
        ``""`` for None, ``"n/a"`` for NaN, ``"inf"``/``"-inf"`` for infinities.
    """
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        name = (column or "").lower()
        for key, fmt in _COLUMN_FORMATS:
            if key in name:
                return format(v, fmt)
        if _is_time_column(name):
            return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def is_numeric(value) -> bool:
    """True for real numbers (not bools), used to right-align cells."""
    if isinstance(value, np.generic):
        value = value.item()
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def normalize_rows(rows, columns: Sequence[str] | None = None) -> tuple[list[str], list[dict]]:
    """Bring a table to ``(columns, [row dict, ...])``.

    Parameters
    ----------
    rows : list of dict, or (columns, list of sequences)
        Row dictionaries (missing keys give empty cells), or a pair of column
        names and row sequences.
    columns : sequence of str, optional
        Columns to keep and their order; default every key in first-seen order.
    """
    if isinstance(rows, tuple) and len(rows) == 2 and not isinstance(rows[0], Mapping):
        head, body = rows
        head = [str(c) for c in head]
        dict_rows = []
        for i, seq in enumerate(body):
            seq = list(seq)
            if len(seq) != len(head):
                raise InputError(f"table row {i}: {len(seq)} values for {len(head)} columns")
            dict_rows.append(dict(zip(head, seq, strict=True)))
        all_columns = head
    else:
        try:
            dict_rows = [dict(r) for r in rows]
        except (TypeError, ValueError):
            raise InputError(
                "table: expected a list of dicts or a pair (columns, rows of values)"
            ) from None
        all_columns = []
        for r in dict_rows:
            for key in r:
                if str(key) not in all_columns:
                    all_columns.append(str(key))
        dict_rows = [{str(k): v for k, v in r.items()} for r in dict_rows]
    if columns is not None:
        cols = [str(c) for c in columns]
        missing = [c for c in cols if c not in all_columns]
        if missing and dict_rows:
            raise InputError(f"columns: {missing} not found in the table (has {all_columns})")
    else:
        cols = all_columns
    if not cols:
        raise InputError("table: no columns")
    return cols, dict_rows


def format_table(rows, columns: Sequence[str] | None = None) -> str:
    """A plain-text table for terminals and logs.

    Parameters
    ----------
    rows : list of dict, or (columns, list of sequences)
        See :func:`normalize_rows`.
    columns : sequence of str, optional
        Columns and their order.

    Returns
    -------
    str
        Header, a dashed rule and one line per row; numbers right-aligned and
        formatted by :func:`format_value`. No trailing newline.

    Examples
    --------
    >>> print(format_table([{"method": "RL", "psnr": 31.234}, {"method": "RLN", "psnr": 33.1}]))
    method   psnr
    ------  -----
    RL      31.23
    RLN     33.10
    """
    cols, data = normalize_rows(rows, columns)
    cells = [[format_value(r.get(c), c) for c in cols] for r in data]
    numeric = [
        any(is_numeric(r.get(c)) for r in data)
        and all(is_numeric(r.get(c)) or r.get(c) is None for r in data)
        for c in cols
    ]
    widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(cols), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def print_metrics_table(
    rows,
    title: str | None = None,
    *,
    columns: Sequence[str] | None = None,
    console=None,
):
    """Print a metrics table to the terminal with :mod:`rich`.

    Parameters
    ----------
    rows : list of dict, or (columns, list of sequences)
        See :func:`normalize_rows`.
    title : str, optional
        Table title.
    columns : sequence of str, optional
        Columns and their order.
    console : rich.console.Console, optional
        Where to print (default: a new console on stdout).

    Returns
    -------
    rich.table.Table
        The table that was printed.
    """
    cols, data = normalize_rows(rows, columns)
    table = Table(title=title)
    for c in cols:
        numeric = any(is_numeric(r.get(c)) for r in data)
        table.add_column(c, justify="right" if numeric else "left")
    for r in data:
        table.add_row(*(format_value(r.get(c), c) for c in cols))
    (console or Console()).print(table)
    return table
