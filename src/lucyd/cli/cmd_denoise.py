"""`lucyd denoise`: Gaussian, CARE or Noise2Void denoising of image files."""

from __future__ import annotations

from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors
from lucyd.errors import InputError


def _output_paths(inputs: list[Path], output: Path) -> list[Path]:
    """One input: OUTPUT is the file. Several: OUTPUT is a folder of NAME_denoised.EXT files."""
    if len(inputs) == 1 and not output.is_dir():
        return [output]
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: several inputs need an output folder, not a file")
    from lucyd.denoise import _image_name

    names = [_image_name(p) for p in inputs]
    if len(set(names)) != len(names):
        raise InputError(f"inputs: names must be distinct to share one output folder, got {', '.join(names)}")
    return [output / f"{n}_denoised{p.name[len(n):]}" for n, p in zip(names, inputs, strict=True)]


@app.command("denoise")
@handle_errors
def denoise_cmd(
    inputs: list[Path] = typer.Argument(..., help="Noisy 2D image files (TIFF, OME-TIFF, Zarr, npy)."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output file (one input) or folder (several inputs: NAME_denoised.EXT)."
    ),
    method: str = typer.Option("n2v", "--method", help="gaussian, care or n2v."),
    model: Path | None = typer.Option(
        None, "--model",
        help="Trained model folder (care: required; n2v: optional, otherwise N2V is trained on INPUTS).",
    ),
    sigma: float | None = typer.Option(None, "--sigma", help="Gaussian width in pixels (method gaussian)."),
    steps: int = typer.Option(2000, "--steps", min=1, help="N2V training steps when no --model is given."),
    model_out: Path | None = typer.Option(
        None, "--model-out", help="Where N2V trained on INPUTS is saved (default: OUTPUT_n2v_model)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of N2V training."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Denoise INPUTS; outputs are float32 in each input's intensity scale, voxel size kept.

    gaussian: smoothing with --sigma. care: a supervised model (lucyd.denoise.train_care or
    lucyd train). n2v: Noise2Void (Krull et al. 2019, N2V2 masking) — with --model a trained
    one, otherwise one is first trained on INPUTS themselves (no clean targets needed).
    A JSON record OUTPUT.denoise.json is written beside every output.
    """
    from lucyd.denoise import DENOISE_METHODS, denoise_file, train_n2v

    if method not in DENOISE_METHODS:
        raise InputError(f"--method: expected one of {', '.join(DENOISE_METHODS)}, got {method!r}")
    for p in inputs:
        if not p.exists():
            raise InputError(f"{p}: no such file")
    if method == "gaussian" and sigma is None:
        raise InputError("--method gaussian needs --sigma PIXELS")
    if method == "care" and model is None:
        raise InputError("--method care needs --model DIR (a trained CARE model folder)")
    if model is not None and not model.is_dir():
        raise InputError(f"--model {model}: no such model folder")
    outputs = _output_paths(inputs, output)
    for inp, out in zip(inputs, outputs, strict=True):
        if out.resolve() == inp.resolve():
            raise InputError(f"{out}: the output would overwrite the input")
        if out.exists() and not overwrite:
            raise InputError(f"{out}: exists; use --overwrite or another name")
    if len(inputs) > 1:
        output.mkdir(parents=True, exist_ok=True)
    if method == "n2v" and model is None:
        model = model_out or output.with_name(output.name.split(".")[0] + "_n2v_model")
        typer.echo(f"training Noise2Void on {len(inputs)} image(s), {steps} steps -> {model}")
        train_n2v(inputs, model, steps=steps, seed=seed, overwrite=overwrite)
    for inp, out in zip(inputs, outputs, strict=True):
        denoise_file(inp, out, method=method, model=model, sigma=sigma, overwrite=overwrite)
        typer.echo(f"denoised {inp} ({method}) -> {out}")
