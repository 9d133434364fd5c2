"""``lucyd evaluate PREDICTION GROUND_TRUTH``: PSNR, SSIM, NRMSE after the field's normalisation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors


def _json_number(value: float) -> float | None:
    """JSON has no Infinity/NaN: a perfect prediction's infinite PSNR is written as null."""
    return value if math.isfinite(value) else None


@app.command("evaluate")
@handle_errors
def evaluate(
    prediction: Path = typer.Argument(..., help="Restored image (TIFF, OME-TIFF, OME-Zarr, .npy)."),
    ground_truth: Path = typer.Argument(..., help="Ground-truth image of the same shape."),
    json_output: bool = typer.Option(False, "--json", help="Print the scores as one JSON object."),
    pmin: float = typer.Option(0.1, "--pmin", help="Low percentile (ground-truth normalisation)"),
    pmax: float = typer.Option(99.9, "--pmax", help="High percentile (ground-truth normalisation)"),
) -> None:
    """Score a restoration against its ground truth: PSNR (dB), SSIM and NRMSE.

    The ground truth is percentile-normalised (PMIN -> 0, PMAX -> 1), the
    prediction is fitted to it by least-squares scale and offset (CSBDeep's
    normalize_minmse), then PSNR and SSIM (data range 1) and NRMSE
    (||pred - gt|| / ||gt||) are computed.
    """
    from lucyd.io import read_image  # imported here so the CLI loads even without optional I/O
    from lucyd.metrics import evaluate as evaluate_arrays

    pred, _ = read_image(prediction)
    gt, _ = read_image(ground_truth)
    scores = evaluate_arrays(pred, gt, pmin=pmin, pmax=pmax)
    if json_output:
        typer.echo(json.dumps({k: _json_number(v) for k, v in scores.items()}))
        return
    typer.echo(f"prediction    {prediction}")
    typer.echo(f"ground truth  {ground_truth}")
    typer.echo(f"normalisation gt percentiles {pmin:g}-{pmax:g}, prediction fitted (scale+offset)")
    typer.echo(f"psnr          {scores['psnr']:.4f} dB")
    typer.echo(f"ssim          {scores['ssim']:.6f}")
    typer.echo(f"nrmse         {scores['nrmse']:.6f}")
