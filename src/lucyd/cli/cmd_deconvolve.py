"""``lucyd deconvolve``: Richardson–Lucy deconvolution of an image file (thin CLI layer)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors
from lucyd.cli.cluster_options import CLUSTER_HELP, cluster_settings
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
    psf: Path = typer.Option(..., "--psf", help="PSF file (same dimensionality as the image)."),
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
                                 "calibration; about 10-20 s)."),
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
    centre_psf: bool = typer.Option(
        True,
        "--centre-psf/--no-centre-psf",
        help="Move the PSF's main lobe onto its array centre (else an off-centre measured PSF "
        "shifts the result); the offset is recorded in OUTPUT.deconv.json.",
    ),
    cluster: str = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Deconvolve INPUT with Richardson-Lucy; writes OUTPUT and OUTPUT.deconv.json (parameters)."""
    from lucyd.deconv import deconvolve_file, parse_memory

    if not input.exists():
        raise InputError(f"{input}: no such file or folder")
    if not psf.exists():
        raise InputError(f"{psf}: no such file or folder")
    start_value = _number_or_auto(start, "--start") if start not in ("mean", "image") else start
    alpha = _number_or_auto(wb_alpha, "--wb-alpha")
    if alpha == "auto":
        from lucyd.io import read_image
        from lucyd.restore.pipeline import calibrated_wb_alpha

        alpha = calibrated_wb_alpha(read_image(input)[0], read_image(psf)[0])["alpha"]
        if not quiet:
            typer.echo(f"--wb-alpha auto: alpha = {alpha:.3g} (calibrated on matched synthetic data)")
    floor_value = _number_or_auto(floor, "--floor")
    kwargs = dict(
        iterations=iterations,
        back_projector=back_projector,
        boundary=boundary,
        acceleration=acceleration,
        tv=tv,
        background=_number_or_auto(background, "--background"),
        tol=tol,
        start=start_value,
        floor=floor_value,
        offset=offset,
        wb_alpha=alpha,
        wb_beta=wb_beta,
        wb_order=wb_order,
        device=device,
        max_memory=parse_memory(max_memory),
        centre_psf=centre_psf,
        progress=not quiet,
    )
    cluster, _ = cluster_settings(cluster, max_memory)
    if cluster is not None:
        kwargs["cluster"] = cluster
    if voxel_size is not None:
        kwargs["voxel_size"] = parse_float_tuple(voxel_size, "--voxel-size")
    if psf_voxel_size is not None:
        kwargs["psf_voxel_size"] = parse_float_tuple(psf_voxel_size, "--psf-voxel-size")
    _validate_choices(kwargs)
    if not quiet:
        _print_estimate(input, psf, kwargs)
    t0 = time.perf_counter()
    deconvolve_file(input, psf, output, **kwargs)
    if not quiet:
        typer.echo(
            f"wrote {output} ({kwargs['iterations']} iterations, {back_projector}, "
            f"{boundary}, {time.perf_counter() - t0:.1f} s); parameters in {output}.deconv.json"
        )


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.2g} s"


def _print_estimate(input: Path, psf: Path, kwargs) -> None:
    """One line on stderr: peak memory and rough time, before the work starts."""
    from lucyd.deconv.api import estimate_deconvolution
    from lucyd.io import image_info
    from lucyd.validation import format_bytes

    shape, psf_shape = image_info(input).shape, image_info(psf).shape
    if len(shape) != len(psf_shape):
        return  # the deconvolution refuses it with its own message
    est = estimate_deconvolution(
        shape, psf_shape, iterations=kwargs["iterations"],
        boundary=kwargs["boundary"], back_projector=kwargs["back_projector"],
        acceleration=kwargs["acceleration"], tv=kwargs["tv"], max_memory=kwargs["max_memory"],
        device=kwargs["device"],
    )
    how = "in blocks within --max-memory" if est["blocked"] else "whole image"
    typer.echo(
        f"estimate: {format_bytes(est['memory_bytes'])} peak for the job ({how}), about "
        f"{_duration(est['seconds'])} for {kwargs['iterations']} iterations "
        f"(job {' x '.join(str(n) for n in est['job_shape'])})",
        err=True,
    )


def _validate_choices(kwargs) -> None:
    """Check the enumerated options early, with the CLI's option names."""
    from lucyd.deconv import BACK_PROJECTORS, BOUNDARIES

    if kwargs["back_projector"] not in BACK_PROJECTORS:
        raise InputError(
            f"--back-projector: unknown {kwargs['back_projector']!r}; "
            f"use one of {', '.join(BACK_PROJECTORS)}"
        )
    if kwargs["boundary"] not in BOUNDARIES:
        raise InputError(
            f"--boundary: unknown {kwargs['boundary']!r}; use one of {', '.join(BOUNDARIES)}"
        )
    if kwargs["acceleration"] not in (None, "biggs-andrews"):
        raise InputError(f"--acceleration: unknown {kwargs['acceleration']!r}; use biggs-andrews")
    from lucyd.deconv.api import MAX_ITERATIONS

    if not 1 <= kwargs["iterations"] <= MAX_ITERATIONS:
        raise InputError(
            f"--iterations: must be from 1 to {MAX_ITERATIONS:,}, got {kwargs['iterations']:,} "
            "(use --tol to stop early)"
        )
