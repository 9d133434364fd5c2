"""`lucyd predict`: restore an image file with a trained model folder (tiled, out of core)."""

from __future__ import annotations

from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors
from lucyd.cli.cluster_options import CLUSTER_HELP, MAX_MEMORY_HELP, cluster_settings
from lucyd.errors import InputError
from lucyd.validation import parse_int_tuple


@app.command("predict")
@handle_errors
def predict_cmd(
    model: Path = typer.Argument(
        ..., help="Model folder written by lucyd train, an ensemble folder, or a bioimage.io "
        "model package (.zip, its folder or rdf.yaml; lucyd's own or another tool's)."
    ),
    input: Path = typer.Argument(..., help="Input image (TIFF, OME-TIFF, Zarr, npy)."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output image (format from extension)."
    ),
    tile: str | None = typer.Option(
        None, help="Tile shape z,y,x, context included (default: from --max-memory, else about "
        "64,256,256). A halo of the network's receptive radius is read around every tile and "
        "discarded (crop and stitch), so tiles leave no seams.",
    ),
    overlap: str | None = typer.Option(
        None, help="Ignored (kept for old scripts): crop-and-stitch tiles need no blending.",
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    cluster: str = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    max_memory: str = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
    uncertainty: bool = typer.Option(
        False, "--uncertainty",
        help="Also write per-voxel uncertainty maps OUTPUT_uncertainty.EXT (total), "
        "OUTPUT_laplace_scale.EXT (probabilistic members), OUTPUT_disagreement.EXT (ensembles).",
    ),
) -> None:
    """Restore INPUT with MODEL and write OUTPUT as float32 in the input's intensity scale.

    The input is read tile by tile and the output written tile by tile, so images larger than
    memory work (Zarr or TIFF); into OME-Zarr a rerun after a crash computes only the
    unfinished tiles. The voxel size of the input is kept. An ensemble folder gives the
    members' mean; with --uncertainty (ensembles or probabilistic CARE) the uncertainty maps
    are written beside OUTPUT, also tile by tile. Do not use restored images
    for intensity quantification (Weigert et al. 2018).
    """
    import math
    import warnings

    from lucyd.errors import LucydWarning
    from lucyd.io import image_info, read_hyperstack, read_image
    from lucyd.io.api import require_finite
    from lucyd.io.outputs import check_output_path
    from lucyd.validation import voxel_size_mismatch

    if not input.exists():
        raise InputError(f"{input}: no such file or folder")
    details = image_info(input, hyperstack=True)
    voxels = math.prod(details.shape)
    check_output_path(output, [model, input], expected_bytes=4 * voxels * (4 if uncertainty else 1))
    from lucyd.export.bioimageio.package import is_bioimageio_package

    cluster, budget = cluster_settings(cluster, max_memory)
    if is_bioimageio_package(model):  # lucyd's own package or another tool's: lucyd.export
        _predict_package(model, input, output, tile, overlap, device, uncertainty, cluster,
                         budget)
        return

    from lucyd.train import IncompleteModelWarning, predict_file
    from lucyd.train.ensemble import Ensemble, load_any
    from lucyd.train.uncertainty import predict_uncertainty_file

    with warnings.catch_warnings():  # said once below, as one line
        warnings.simplefilter("ignore", IncompleteModelWarning)
        m = load_any(model)  # a model folder, or an ensemble folder (ensemble.json)
    members = m.members if isinstance(m, Ensemble) else [m]
    for member in members:
        if not getattr(member, "complete", True):
            typer.echo(f"warning: {member.card.incomplete_message(member.path)}", err=True)
            member._warned = True
    if not details.metadata.is_volume and (uncertainty or isinstance(m, Ensemble)):
        raise InputError(f"{input}: --uncertainty and ensembles take one volume; this file has "
                         f"axes {details.metadata.axes}")
    reader = read_image if details.metadata.is_volume else read_hyperstack
    require_finite(reader(input, lazy=True)[0], str(input))
    mismatch = voxel_size_mismatch(getattr(m, "voxel_size", None), details.metadata.voxel_size,
                                   expected_name=f"the model's training data ({model})",
                                   actual_name=f"the image ({input})")
    if mismatch:
        warnings.warn(mismatch, LucydWarning, stacklevel=1)
    if not details.metadata.is_volume:  # time points / channels: one volume at a time
        from lucyd.train.volumes import predict_volumes_file

        out = predict_volumes_file(m, input, output, tile_shape=parse_int_tuple(tile, "--tile")
                                   if tile else None, overlap=_overlap(overlap), device=device,
                                   cluster=cluster, max_memory=budget)
        typer.echo(f"restored {input} ({details.metadata.axes}, every volume) with {m.name} -> {out}")
        return
    tile_shape = parse_int_tuple(tile, "--tile") if tile else None
    ov = _overlap(overlap)
    if uncertainty or isinstance(m, Ensemble):
        written = predict_uncertainty_file(m, input, output, uncertainty=uncertainty,
                                           tile_shape=tile_shape, overlap=ov, device=device,
                                           cluster=cluster, max_memory=budget)
        what = f"an ensemble of {len(m)} {m.name}" if isinstance(m, Ensemble) else m.name
        typer.echo(f"restored {input} with {what} -> "
                   + ", ".join(str(p) for p in written.values()))
        return
    out = predict_file(m, input, output, tile_shape=tile_shape, overlap=ov, device=device,
                       cluster=cluster, max_memory=budget)
    typer.echo(f"restored {input} with {m.name} -> {out}")


def _predict_package(model, input, output, tile, overlap, device, uncertainty, cluster,
                     budget) -> None:
    """A bioimage.io package: :func:`lucyd.export.bioimageio.predict_package_file` (lucyd's
    own packages take --cluster/--max-memory; another tool's refuse them)."""
    from lucyd.export.bioimageio import predict_package_file

    if uncertainty:
        raise InputError("--uncertainty: needs a lucyd model or ensemble folder, not a package")
    written = predict_package_file(
        model, input, output, device=device,
        tile_shape=parse_int_tuple(tile, "--tile") if tile else None,
        overlap=_overlap(overlap), cluster=cluster, max_memory=budget,
    )
    typer.echo(f"restored {input} with {model} -> " + ", ".join(str(p) for p in written.values()))


def _overlap(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--overlap: expected comma-separated integers, got {text!r}") from None
