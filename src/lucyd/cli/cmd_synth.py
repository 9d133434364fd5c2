"""`lucyd synth`: generate a synthetic training set (raw/ + gt/ + psf.tif + dataset.json)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors
from lucyd.errors import InputError
from lucyd.validation import parse_float_tuple, parse_int_tuple


def _parse_params(items: list[str] | None) -> dict:
    """``KEY=VALUE`` phantom parameters; VALUE is JSON (``4``, ``[4, 7]``) or ``4,7``."""
    params: dict = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param: expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = list(parse_float_tuple(text, f"--param {key}"))
            except InputError:
                raise InputError(f"--param {key}: cannot parse value {text!r} "
                                 "(use a number, a JSON list or comma-separated numbers)") from None
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        params[key.strip()] = value
    return params


@app.command("synth")
@handle_errors
def synth(
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    kind: str = typer.Option("mixed", help="Phantom: mixed, tubules, granules or nuclei."),
    task: str = typer.Option("deconvolution", help="deconvolution, denoising or isotropic."),
    psf: Path | None = typer.Option(None, help="PSF file (tif, ome.tif, npy, zarr)."),
    psf_model: str | None = typer.Option(None, help="PSF model instead of a file, e.g. born-wolf."),
    na: float | None = typer.Option(None, help="Numerical aperture (with --psf-model)."),
    wavelength: float | None = typer.Option(None, help="Emission wavelength in µm."),
    ni: float | None = typer.Option(None, help="Immersion refractive index (default 1.515, oil)."),
    voxel_size: str | None = typer.Option(
        None, help="Voxel size in µm, z,y,x (default: the PSF file's, else 0.1)."),
    psf_shape: str | None = typer.Option(None, help="Model PSF shape, e.g. 31,63,63."),
    n: int = typer.Option(20, help="Number of pairs."),
    shape: str = typer.Option("64,128,128", help="Image shape z,y,x or y,x (pixels)."),
    photons: float = typer.Option(5.0, help="Photons per phantom unit (RLN recipe: 5)."),
    read_noise: float = typer.Option(0.5, help="Read noise sigma, electrons."),
    background: float = typer.Option(30.0, help="Phantom background, phantom units (RLN: 30)."),
    camera_background: float = typer.Option(0.0, help="Extra background photons per pixel."),
    high_photons: float | None = typer.Option(
        None, help="Denoising: target photon count (default: noiseless target)."),
    z_factor: float = typer.Option(4.0, help="Isotropic: axial sub-sampling factor."),
    axial_sigma: float | None = typer.Option(
        None, help="Isotropic without PSF: Gaussian axial blur sigma, px (default z-factor/2)."),
    perlin: float = typer.Option(0.0, help="Amplitude of a smooth (Perlin-type) background."),
    perlin_scale: float = typer.Option(32.0, help="Size of the smooth background's blotches, px."),
    param: list[str] | None = typer.Option(
        None, "--param", help="Phantom parameter KEY=VALUE (repeatable), e.g. n_spheres=50."),
    density: str = typer.Option(
        "1", help="Object-density factor, or a range lo,hi drawn log-uniformly per pair "
                  "(e.g. 0.01,1 mixes sparse and crowded scenes)."),
    seed: int = typer.Option(0, help="Base random seed."),
    workers: int | None = typer.Option(None, help="Parallel processes (default: CPU count)."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset in the folder."),
    device: str = typer.Option("auto", help="auto, cpu or cuda (for the convolutions)."),
) -> None:
    """Generate synthetic training pairs (Li et al. 2022 RLN recipe; Weigert et al. 2018 CARE).

    Writes OUTPUT/raw/0000.tif ..., OUTPUT/gt/0000.tif ..., OUTPUT/psf.tif and
    OUTPUT/dataset.json. An interrupted run resumes when started again with the same options.
    """
    from lucyd.synth import SynthConfig, make_dataset

    config = SynthConfig.build(
        kind=kind, task=task, n=n, shape=parse_int_tuple(shape, "--shape"), photons=photons,
        read_noise=read_noise, background=background, camera_background=camera_background,
        high_photons=high_photons, z_factor=z_factor, axial_sigma=axial_sigma, seed=seed,
        psf=str(psf.resolve()) if psf is not None else None, psf_model=psf_model, na=na,
        wavelength=wavelength, ni=ni,
        psf_shape=parse_int_tuple(psf_shape, "--psf-shape") if psf_shape else None,
        voxel_size=parse_float_tuple(voxel_size, "--voxel-size") if voxel_size else None,
        phantom_params=_parse_params(param),
        density=parse_float_tuple(density, "--density"),
        perlin={"amplitude": perlin, "scale": perlin_scale} if perlin > 0 else None,
    )
    if psf is not None and not psf.exists():
        raise InputError(f"--psf: file not found: {psf}")
    from lucyd.io.outputs import check_output_path, same_or_inside

    check_output_path(output, [psf], folder=True)
    if psf is not None and same_or_inside(output / "psf.tif", psf):
        raise InputError(f"--output: {output} would overwrite the PSF {psf} (it writes psf.tif there)")
    out = make_dataset(config, output, workers=workers, overwrite=overwrite, device=device)
    typer.echo(f"wrote {config.n} {config.kind}/{config.task} pairs to {out}")
