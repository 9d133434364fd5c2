"""``lucyd psf``: write a model PSF (widefield or confocal) or one measured from beads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import typer

from lucyd.cli.app import app, handle_errors
from lucyd.errors import InputError
from lucyd.validation import parse_float_tuple, parse_int_tuple

_DEFAULT_SHAPE = "33,65,65"


def _format_fwhm(values, voxel_size) -> str:
    names = ("z", "y", "x")[-len(values) :]
    unit = " µm" if voxel_size is not None else " px"
    return ", ".join(f"{n} {v:.4g}{unit}" for n, v in zip(names, values, strict=True))


@app.command("psf")
@handle_errors
def psf_command(
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output file (.tif, .ome.tif, .ome.zarr, .npy)."
    ),
    model: str = typer.Option(
        "born-wolf", "--model", "-m", help="gaussian, born-wolf, gibson-lanni or vectorial."
    ),
    shape: str = typer.Option(
        None, "--shape", help=f"Odd sizes 'z,y,x' or 'y,x' (default {_DEFAULT_SHAPE} for models)."
    ),
    voxel_size: str = typer.Option(
        None, "--voxel-size", help="Voxel size in µm, 'dz,dy,dx' (or 'dy,dx'; one value = all)."
    ),
    na: float = typer.Option(None, "--na", help="Numerical aperture."),
    wavelength: float = typer.Option(None, "--wavelength", help="Emission wavelength, µm."),
    ni: float = typer.Option(
        None, "--ni", help="Immersion refractive index (default 1.515, oil: every model's default)."
    ),
    ns: float = typer.Option(None, "--ns", help="Sample index (gibson-lanni, vectorial)."),
    ng: float = typer.Option(None, "--ng", help="Coverslip index (gibson-lanni, vectorial)."),
    ni0: float = typer.Option(None, "--ni0", help="Design immersion index."),
    ng0: float = typer.Option(None, "--ng0", help="Design coverslip index."),
    tg: float = typer.Option(None, "--tg", help="Coverslip thickness, µm."),
    tg0: float = typer.Option(None, "--tg0", help="Design coverslip thickness, µm."),
    ti0: float = typer.Option(None, "--ti0", help="Design working distance, µm."),
    particle_depth: float = typer.Option(
        None, "--particle-depth", help="Emitter depth below the coverslip, µm."
    ),
    oversampling: int = typer.Option(
        None, "--oversampling", help="Sub-pixels per lateral axis (pixel integration)."
    ),
    confocal: bool = typer.Option(False, "--confocal", help="Confocal PSF (excitation x pinhole)."),
    excitation_wavelength: float = typer.Option(
        None, "--excitation-wavelength", help="Excitation wavelength, µm (with --confocal)."
    ),
    pinhole: float = typer.Option(1.0, "--pinhole", help="Pinhole diameter in Airy units."),
    from_beads: Path = typer.Option(
        None, "--from-beads", help="Measure the PSF from this bead image instead of a model."
    ),
    threshold: float = typer.Option(
        0.2, "--threshold", help="Beads: minimum brightness, fraction of the brightest."
    ),
    min_distance: int = typer.Option(3, "--min-distance", help="Beads: minimum peak spacing, px."),
) -> None:
    """Compute a PSF and write it with its voxel size; print its FWHM per axis.

    Example: lucyd psf --model born-wolf --shape 33,65,65 --voxel-size 0.3,0.13,0.13
    --na 1.45 --wavelength 0.461 --ni 1.512 -o psf.tif
    """
    from lucyd import psf as psf_lib
    from lucyd.io import ImageMetadata, read_image, write_image
    from lucyd.io.outputs import check_output_path
    from lucyd.psf.models import DEFAULT_NI

    ni = DEFAULT_NI if ni is None else ni
    shape_t = parse_int_tuple(shape, "--shape") if shape is not None else None
    check_output_path(output, [from_beads], expected_bytes=4 * math.prod(shape_t or (1,)))
    voxel_t = parse_float_tuple(voxel_size, "--voxel-size") if voxel_size is not None else None

    if from_beads is not None:
        image, meta = read_image(from_beads)
        image = np.asarray(image)
        if voxel_t is None and meta.voxel_size is not None:
            voxel_t = tuple(meta.voxel_size)
        result, report = psf_lib.from_beads(
            image, voxel_t, shape=shape_t, threshold=threshold, min_distance=min_distance,
            return_report=True,
        )
        description = (
            f"measured from {len(report.used)} bead(s) of {report.candidates} found "
            f"in {from_beads.name}"
        )
    else:
        if voxel_t is None:
            raise InputError("--voxel-size: required for a model PSF (µm, e.g. 0.3,0.13,0.13)")
        if na is None:
            raise InputError("--na: required for a model PSF")
        if wavelength is None:
            raise InputError("--wavelength: required for a model PSF (emission, µm)")
        shape_t = shape_t if shape_t is not None else parse_int_tuple(_DEFAULT_SHAPE, "--shape")
        if len(voxel_t) == 1:
            voxel_t = voxel_t * len(shape_t)
        if len(voxel_t) != len(shape_t) and not (len(voxel_t) == 3 and len(shape_t) == 2):
            raise InputError(
                f"--voxel-size: has {len(voxel_t)} values but --shape has {len(shape_t)}"
            )
        extra = {
            key: value
            for key, value in {
                "ns": ns, "ng": ng, "ni0": ni0, "ng0": ng0, "tg": tg, "tg0": tg0, "ti0": ti0,
                "particle_depth": particle_depth, "oversampling": oversampling,
            }.items()
            if value is not None
        }
        if confocal:
            if excitation_wavelength is None:
                raise InputError("--excitation-wavelength: required with --confocal (µm)")
            result = psf_lib.confocal(
                model, shape_t, voxel_t, na=na, excitation_wavelength=excitation_wavelength,
                emission_wavelength=wavelength, ni=ni, pinhole_au=pinhole, **extra,
            )
            description = f"confocal {model}, pinhole {pinhole:g} AU"
        else:
            result = psf_lib.make_psf(model, shape_t, voxel_t, na=na, wavelength=wavelength,
                                      ni=ni, **extra)
            description = f"widefield {model}"

    if voxel_t is not None and len(voxel_t) == 3 and result.ndim == 2:
        voxel_t = voxel_t[1:]
    if voxel_t is not None and len(voxel_t) == 1:
        voxel_t = voxel_t * result.ndim
    axes = "ZYX" if result.ndim == 3 else "YX"
    written = write_image(output, result, ImageMetadata(axes, voxel_t))
    widths = psf_lib.fwhm(result, voxel_t)
    typer.echo(f"wrote {written}: {description}, shape {tuple(result.shape)}")
    typer.echo(f"FWHM: {_format_fwhm(widths, voxel_t)}")
