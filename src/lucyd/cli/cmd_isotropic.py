"""``lucyd isotropic``: self-supervised isotropic restoration of an anisotropic stack (CARE recipe)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors
from lucyd.cli.cluster_options import CLUSTER_HELP, MAX_MEMORY_HELP, cluster_settings
from lucyd.errors import InputError
from lucyd.validation import parse_float_tuple, parse_int_tuple


@app.command("isotropic")
@handle_errors
def isotropic_command(
    input: Path = typer.Argument(..., help="Anisotropic (z, y, x) stack (.tif, .ome.tif, .ome.zarr, .npy)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output stack (float32, z upsampled)."),
    z_factor: float = typer.Option(
        None, "--z-factor", "-f",
        help="Axial/lateral sampling ratio (>= 1). Default: dz/dx from the file's voxel size."),
    steps: int = typer.Option(2000, "--steps", help="Training steps of the 2D network."),
    network: str = typer.Option("care", "--network", help="2D network to train (care, rcan, rbcr, ddn, rln)."),
    patch: str = typer.Option(None, "--patch", help="Training patch 'py,px' or one size (default <= 64)."),
    batch: int = typer.Option(None, "--batch", help="Patches per step (default: the network's recipe)."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default: the network's recipe)."),
    axial_psf: Path = typer.Option(
        None, "--axial-psf",
        help="Acquisition PSF (3D, sampled like the stack; or 1D/2D on the lateral grid)."),
    axial_sigma: float = typer.Option(
        None, "--axial-sigma", help="Gaussian axial blur (lateral px) without --axial-psf; default F/2."),
    photons: float = typer.Option(None, "--photons", help="Add camera noise to training inputs (photons/unit)."),
    fuse: str = typer.Option("geometric", "--fuse", help="Fusion of XZ and YZ views: geometric or mean."),
    voxel_size: str = typer.Option(None, "--voxel-size", help="Voxel size µm 'dz,dy,dx' (default: file)."),
    model_dir: Path = typer.Option(None, "--model-dir", help="Keep the trained 2D model in this folder."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    cluster: str = typer.Option(None, "--cluster", help="Prediction: " + CLUSTER_HELP),
    max_memory: str = typer.Option(None, "--max-memory", help="Prediction: " + MAX_MEMORY_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Restore INPUT to isotropic resolution: train on its own lateral planes, predict XZ and YZ,
    fuse (Weigert et al. 2018). OUTPUT has round(nz*F) planes and voxel size (dz/F, dy, dx)."""
    import numpy as np

    from lucyd.io import ImageMetadata, read_image, write_image
    from lucyd.isotropic import isotropic_restore, isotropic_voxel_size
    from lucyd.validation import as_voxel_size

    if not input.exists():
        raise InputError(f"{input}: no such file or folder")
    from lucyd.io.outputs import check_output_path

    check_output_path(output, [input, axial_psf, model_dir])
    if model_dir is not None:
        check_output_path(model_dir, [input, axial_psf], name="--model-dir", folder=True)
    image, meta = read_image(input, lazy=True)  # read whole below unless --max-memory is given
    if len(image.shape) != 3:
        raise InputError(f"{input}: isotropic restoration needs a 3D (z, y, x) stack, got shape "
                         f"{tuple(image.shape)}")
    vs = (as_voxel_size(parse_float_tuple(voxel_size, "--voxel-size"), 3) if voxel_size
          else meta.voxel_size)
    if z_factor is None:
        if vs is None:
            raise InputError("--z-factor: required (the input has no voxel size to derive dz/dx)")
        z_factor = float(vs[0]) / float(vs[2])
    check_output_path(output, [input, axial_psf, model_dir],
                      expected_bytes=4 * math.prod(image.shape) * max(1.0, z_factor))
    psf = None
    if axial_psf is not None:
        if not axial_psf.exists():
            raise InputError(f"{axial_psf}: no such file or folder")
        psf = np.asarray(read_image(axial_psf)[0])
    patch_t = None
    if patch is not None:
        patch_t = parse_int_tuple(patch, "--patch")
        if len(patch_t) == 1:
            patch_t = patch_t * 2
    cluster, budget = cluster_settings(cluster, max_memory)
    t0 = time.perf_counter()
    run = dict(voxel_size=vs, axial_psf=psf, axial_sigma=axial_sigma, network=network,
               steps=steps, patch=patch_t, batch=batch, lr=lr, photons=photons, fuse=fuse,
               seed=seed, device=device, model_dir=model_dir, cluster=cluster, max_memory=budget)
    out_vs = isotropic_voxel_size(vs, z_factor)
    out_meta = ImageMetadata("ZYX", out_vs)
    if budget is None:  # in memory: the stack, its upsampled copy and the result
        out = isotropic_restore(np.asarray(image[...]), z_factor, **run)
        write_image(output, out, out_meta)
    else:  # out of core: training planes within the budget, tiles read and written one by one
        from lucyd.io import open_writer
        from lucyd.io.api import require_finite
        from lucyd.isotropic import upsample_z_shape

        require_finite(image, str(input))  # chunk by chunk; a NaN would spread through tiles
        shape = upsample_z_shape(image.shape, z_factor)
        with open_writer(output, shape, np.float32, out_meta) as dest:
            out = isotropic_restore(image, z_factor, out=dest, **run)
    seconds = time.perf_counter() - t0
    if json_output:
        typer.echo(json.dumps({"output": str(output), "shape": list(out.shape),
                               "voxel_size": list(out_vs) if out_vs else None,
                               "z_factor": z_factor, "seconds": round(seconds, 1)}))
    elif not quiet:
        size = " x ".join(f"{v:.4g}" for v in out_vs) + " µm" if out_vs else "unknown voxel size"
        typer.echo(f"wrote {output}: shape {' x '.join(str(n) for n in out.shape)}, {size} "
                   f"(z-factor {z_factor:.4g}, {network}, {steps} steps, {seconds:.1f} s)")
