"""``lucyd info FILE``: format, shape, dtype, axes, voxel size and intensity statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.6g}"


@app.command("info")
@handle_errors
def info(
    path: Path = typer.Argument(
        ..., help="Image: .tif/.tiff (ImageJ, OME, plain), .ome.zarr/.zarr folder or .npy."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
) -> None:
    """Show an image's format, shape, dtype, axes, voxel size (µm) and min/max/mean.

    The statistics are computed block by block, so large zarr/TIFF files are never loaded whole.
    """
    from lucyd.io import image_info, read_hyperstack  # here, so that `lucyd --help` stays fast
    from lucyd.io.api import image_stats

    details = image_info(path, hyperstack=True)
    data, _ = read_hyperstack(path, lazy=True)
    stats = image_stats(data)
    meta = details.metadata
    record = {
        "path": str(path),
        "format": details.format,
        "shape": list(details.shape),
        "dtype": str(details.dtype),
        "axes": meta.axes,
        "voxel_size_um": list(meta.voxel_size) if meta.voxel_size is not None else None,
        "min": None if math.isnan(stats["min"]) else stats["min"],
        "max": None if math.isnan(stats["max"]) else stats["max"],
        "mean": None if math.isnan(stats["mean"]) else stats["mean"],
        "nonfinite": stats["nonfinite"],
    }
    if not meta.is_volume:  # time points and channels
        record.update(channel_names=meta.channel_names, wavelengths_um=meta.wavelengths,
                      time_interval_s=meta.time_interval)
    if json_output:
        typer.echo(json.dumps(record))
        return
    if meta.voxel_size is not None:
        sizes = " x ".join(f"{v:.6g}" for v in meta.voxel_size)
        voxel = f"{sizes} µm ({', '.join(meta.spatial_axes.lower())})"
    else:
        voxel = "unknown"
    lines = [
        ("file", str(path)),
        ("format", details.format),
        ("shape", " x ".join(str(n) for n in details.shape)),
        ("dtype", str(details.dtype)),
        ("axes", meta.axes),
        ("voxel size", voxel),
        ("min", _number(stats["min"])),
        ("max", _number(stats["max"])),
        ("mean", _number(stats["mean"])),
    ]
    if meta.channel_names is not None and not meta.is_volume:
        lines.append(("channels", ", ".join(meta.channel_names)))
    if meta.wavelengths is not None and not meta.is_volume:
        lines.append(("emission", ", ".join("?" if w is None else f"{w:g} µm" for w in meta.wavelengths)))
    if meta.time_interval is not None:
        lines.append(("time step", f"{meta.time_interval:g} s"))
    if stats["nonfinite"]:
        lines.append(("non-finite", str(stats["nonfinite"])))
    for key, value in lines:
        typer.echo(f"{key + ':':<13}{value}")
