"""``lucyd deconvolve``: Richardson–Lucy deconvolution of an image file (thin CLI layer)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors
from lucyd.cli.cluster_options import CLUSTER_HELP, cluster_settings
from lucyd.cli.volumes import volume_options
from lucyd.errors import InputError
from lucyd.validation import parse_float_tuple


def _number_or_auto(text: str | None, name: str):
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{name}: expected a number or 'auto', got {text!r}") from None


@app.command("deconvolve")
@handle_errors
def deconvolve_command(
    input: Path = typer.Argument(
        ..., help="Image to deconvolve (.tif, .ome.tif, .ome.zarr, .npy)."
    ),
    psf: list[Path] = typer.Option(
        None, "--psf", help="PSF file (same dimensionality as the image); for several channels "
        "one per channel, in channel order (repeat --psf), or one with --same-psf."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output file (.tif, .ome.tif, .ome.zarr, .npy)."
    ),
    iterations: int = typer.Option(
        20, "--iterations", "-n", help="Number of iterations (max with --tol)."
    ),
    back_projector: str = typer.Option(
        "flipped",
        "--back-projector",
        help="flipped (classic RL), gaussian, butterworth or wiener-butterworth (1-3 iterations).",
    ),
    boundary: str = typer.Option(
        "non-circulant", "--boundary", help="non-circulant (Bertero weights), circulant or zero."
    ),
    acceleration: str = typer.Option(
        None, "--acceleration", help="biggs-andrews (vector extrapolation)."
    ),
    tv: float = typer.Option(
        0.0, "--tv", help="RL-TV regularisation weight (e.g. 0.002); 0 = off."
    ),
    background: str = typer.Option(
        "0", "--background", help="Constant background (image units) or 'auto'."
    ),
    tol: float = typer.Option(
        None, "--tol", help="Stop when the relative change falls below this."
    ),
    start: str = typer.Option("auto", "--start", help="auto, mean (flat), image, or a number."),
    floor: str = typer.Option(
        "auto", "--floor", help="Positivity floor: auto (image minimum) or a number."
    ),
    offset: float = typer.Option(
        0.0, "--offset", help="Constant added to the image (kept in the output)."
    ),
    voxel_size: str = typer.Option(
        None, "--voxel-size", help="Image voxel size µm 'dz,dy,dx' (default: file)."
    ),
    psf_voxel_size: str = typer.Option(
        None,
        "--psf-voxel-size",
        help="PSF voxel size µm (default: PSF file); resampled if different.",
    ),
    wb_alpha: str = typer.Option("0.05", "--wb-alpha", help="Wiener parameter alpha, or 'auto': chosen on synthetic "
                                 "data calibrated to the image's noise, brightness and density (lucyd restore's "
                                 "calibration; about 10-20 s; with --max-memory on the image's centred "
                                 "crop of at most budget / 256 voxels)."),
    wb_beta: float = typer.Option(1.0, "--wb-beta", help="Cutoff gain beta (1 = automatic)."),
    wb_order: int = typer.Option(10, "--wb-order", help="Butterworth order n."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    max_memory: str = typer.Option(
        None,
        "--max-memory",
        help="Memory budget for the job, e.g. 2GB: jobs that need more run block by block, "
        "out of core. It bounds what the job allocates (arrays, blocks, buffers, pages of the "
        "input and output files): the process's peak resident memory stayed below the budget "
        "plus the fixed cost of the runtime (Python, torch: about 280 MB on CPU), measured "
        "for 256 MB-2 GB on CPU. Without it, a job larger than the available memory is refused.",
    ),
    psf_energy: float = typer.Option(
        None, "--psf-energy", help="Trim the PSF to the box holding this fraction of its energy "
        "(e.g. 0.999; the fraction kept is recorded in OUTPUT.deconv.json). Default: no trim."),
    centre_psf: bool = typer.Option(
        True,
        "--centre-psf/--no-centre-psf",
        help="Move the PSF's main lobe onto its array centre (else an off-centre measured PSF "
        "shifts the result); the offset is recorded in OUTPUT.deconv.json.",
    ),
    cluster: str = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    wavelength: str = typer.Option(
        None, "--wavelength", help="Model PSFs instead of --psf: emission wavelength(s) in µm, "
        "one per channel, e.g. 0.52,0.61 (default with --na: the file's)."),
    na: float = typer.Option(None, "--na", help="Numerical aperture (model PSFs)."),
    ni: float = typer.Option(1.515, "--ni", help="Immersion refractive index (model PSFs)."),
    psf_model: str = typer.Option("born-wolf", "--psf-model", help="gaussian, born-wolf, "
                                  "gibson-lanni, vectorial (model PSFs)."),
    same_psf: bool = typer.Option(False, "--same-psf", help="Use the one --psf (or "
                                  "--wavelength) for every channel."),
) -> None:
    """Deconvolve INPUT with Richardson-Lucy; writes OUTPUT and OUTPUT.deconv.json (parameters).

    Time series and multichannel files: every (t, c) volume is deconvolved with its channel's
    PSF into one OUTPUT with the same axes, channel names, wavelengths and time interval."""
    # lazy: `lucyd --help` must not import torch (start-up under 1 s)
    from lucyd.deconv import deconvolve_file

    if not input.exists():
        raise InputError(f"{input}: no such file or folder")
    for path in psf or []:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    alpha = _number_or_auto(wb_alpha, "--wb-alpha")
    # the options are validated once, by the job's config; its one-line error, with the option
    # spelled as on the command line
    with _option_names():
        config = _config(
            iterations=iterations,
            back_projector=back_projector,
            boundary=boundary,
            acceleration=acceleration,
            tv=tv,
            background=_number_or_auto(background, "--background"),
            tol=tol,
            start=_number_or_auto(start, "--start") if start not in ("mean", "image") else start,
            floor=_number_or_auto(floor, "--floor"),
            offset=offset,
            wb_alpha=0.05 if alpha == "auto" else alpha,
            wb_beta=wb_beta,
            wb_order=wb_order,
            device=device,
            max_memory=max_memory,
            centre_psf=centre_psf,
            psf_energy=psf_energy,
            voxel_size=parse_float_tuple(voxel_size, "--voxel-size") if voxel_size else None,
            psf_voxel_size=(parse_float_tuple(psf_voxel_size, "--psf-voxel-size")
                            if psf_voxel_size else None),
        )
    volumes = volume_options(input, psf, wavelength=wavelength, na=na, ni=ni, psf_model=psf_model,
                             same_psf=same_psf)
    if volumes is not None and alpha == "auto":
        raise InputError("--wb-alpha auto: calibrates one volume; give a number for time series, "
                         "channels or model PSFs")
    cluster, _ = cluster_settings(cluster, config.max_memory)  # checked before the calibration
    if alpha == "auto":
        from lucyd.io import read_image
        from lucyd.restore.physics_steps import calibrated_wb_alpha

        sample = _calibration_image(input, config.max_memory)
        config.wb_alpha = calibrated_wb_alpha(sample, read_image(psf[0])[0])["alpha"]
        if not quiet:
            typer.echo(f"--wb-alpha auto: alpha = {config.wb_alpha:.3g} (calibrated on matched "
                       "synthetic data)")
    t0 = time.perf_counter()
    if volumes is not None:  # time points, channels or model PSFs: one volume at a time
        from lucyd.deconv.hyperstack import deconvolve_volumes_file

        deconvolve_volumes_file(input, output, **volumes, config=config, progress=not quiet,
                                cluster=cluster)
    else:
        if not quiet:
            _print_estimate(input, psf[0], config)
        deconvolve_file(input, psf[0], output, config, progress=not quiet, cluster=cluster)
    if not quiet:
        typer.echo(
            f"wrote {output} ({config.iterations} iterations, {config.back_projector}, "
            f"{config.boundary}, {time.perf_counter() - t0:.1f} s); parameters in "
            f"{output}.deconv.json"
        )


#: working memory of the --wb-alpha auto calibration per voxel of its image: the peak resident
#: memory of calibrated_wb_alpha above the runtime's was 235-253 bytes per voxel (32×128×128 and
#: 64×256×256 float32, one thread)
CALIBRATION_BYTES_PER_VOXEL = 256


def _calibration_image(path: Path, budget: int | None):
    """The image --wb-alpha auto calibrates on: the whole image, or within --max-memory its
    centred crop (the noise, brightness and density of a large volume's centre stand for it)."""
    import math

    import numpy as np

    from lucyd.io import read_image

    image, _ = read_image(path, lazy=True)
    shape = tuple(int(n) for n in image.shape)
    fit = 1.0 if budget is None else budget / CALIBRATION_BYTES_PER_VOXEL / math.prod(shape)
    if fit >= 1:
        return np.asarray(image[...], dtype=np.float32)
    side = fit ** (1 / len(shape))
    crop = [min(n, max(16, int(n * side))) for n in shape]
    while math.prod(crop) * CALIBRATION_BYTES_PER_VOXEL > budget and max(crop) > 16:
        d = crop.index(max(crop))  # an axis kept at 16 leaves less to the others
        crop[d] = max(16, int(crop[d] * 0.9))
    region = tuple(slice((n - c) // 2, (n - c) // 2 + c) for n, c in zip(shape, crop, strict=True))
    return np.asarray(image[region], dtype=np.float32)


def _config(**options):
    from lucyd.deconv import DeconvConfig

    return DeconvConfig.from_call(**options)


@contextmanager
def _option_names():
    """Re-spell the config's ``field: message`` errors as ``--field: message``."""
    try:
        yield
    except InputError as exc:
        field, sep, rest = str(exc).partition(": ")
        if sep and field.isidentifier():
            raise InputError(f"--{field.replace('_', '-')}: {rest}") from None
        raise


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.2g} s"


def _print_estimate(input: Path, psf: Path, config) -> None:
    """One line on stderr: peak memory and rough time, before the work starts."""
    from lucyd.deconv.estimate import estimate_deconvolution
    from lucyd.io import image_info
    from lucyd.validation import format_bytes

    shape, psf_shape = image_info(input).shape, image_info(psf).shape
    if len(shape) != len(psf_shape):
        return  # the deconvolution refuses it with its own message
    est = estimate_deconvolution(shape, psf_shape, config)
    how = "in blocks within --max-memory" if est["blocked"] else "whole image"
    typer.echo(
        f"estimate: {format_bytes(est['memory_bytes'])} peak for the job ({how}), about "
        f"{_duration(est['seconds'])} for {config.iterations} iterations "
        f"(job {' x '.join(str(n) for n in est['job_shape'])})",
        err=True,
    )
