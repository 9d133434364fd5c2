"""``lucyd restore``: calibrated network restoration with a physics self-check (thin CLI layer)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors
from lucyd.cli.cluster_options import CLUSTER_HELP, MAX_MEMORY_HELP, cluster_settings
from lucyd.cli.volumes import is_hyperstack, volume_options
from lucyd.errors import InputError
from lucyd.validation import parse_float_tuple


def parse_duration(text: str) -> float:
    """Seconds from ``"600"``, ``"600s"``, ``"10m"``, ``"1.5h"``."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text).lower())
    if not match:
        raise InputError(f"budget: cannot parse {text!r}; use e.g. 600, 600s, 10m or 1h")
    value = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if value <= 0:
        raise InputError(f"budget: must be positive, got {text!r}")
    return value


def _print_summary(paths, records) -> None:
    for path, rec in zip(paths, records, strict=True):
        cal = rec["calibration"]["noise"]
        model = rec.get("model")
        typer.echo(f"{path}: {rec['chosen']} ({rec['why']})")
        typer.echo(f"  noise: gain {cal['gain']:.3g} counts/e-, read noise {cal['read_noise_e']:.3g} e-, "
                   f"bright level {cal['peak_e']:.3g} e-, structure share "
                   f"{rec['calibration']['foreground_fraction']:.3f}")
        typer.echo(f"  RL: {rec['rl']['iterations']} iterations (discrepancy principle)")
        if rec.get("zoo"):
            typer.echo(f"  zoo: {rec['zoo']['why']}")
        if model:
            typer.echo(f"  model: {'reused' if model['reused'] else 'trained'} ({model['cache']}), "
                       f"{model['steps']} training steps")
            if not model.get("complete", True):
                typer.echo("  warning: the --budget cap stopped training before its steps; this result "
                           "depends on the machine's load")
        verdict = rec.get("physics_check", {}).get("verdict")
        if verdict:
            typer.echo(f"  physics check: {verdict}")
        mismatch = rec.get("physics_check", {}).get("model_warning")
        if mismatch:
            typer.echo(f"  warning: {mismatch}")


@app.command("restore")
@handle_errors
def restore_command(
    inputs: list[Path] = typer.Argument(None, help="Raw image(s) sharing one PSF (.tif, .ome.tif, .ome.zarr, .npy)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (one input) or folder (several)."),
    psf: list[Path] = typer.Option(None, "--psf", help="PSF file; one per channel (repeat --psf, channel order) "
                                   "for a multichannel image; or give --na, --wavelength and --ni."),
    na: float = typer.Option(None, "--na", help="Numerical aperture (for a model PSF)."),
    wavelength: str = typer.Option(None, "--wavelength", help="Emission wavelength in µm (model PSF); one per "
                                   "channel, e.g. 0.52,0.61 (default with --na: the file's)."),
    ni: float = typer.Option(1.515, "--ni", help="Immersion refractive index (model PSF)."),
    psf_model: str = typer.Option("born-wolf", "--psf-model", help="gaussian, born-wolf, gibson-lanni, vectorial."),
    voxel_size: str = typer.Option(None, "--voxel-size", help="Voxel size in µm, e.g. 0.3,0.1,0.1 (else the file's)."),
    method: str = typer.Option("auto", "--method", help="auto (a pretrained zoo model when one fits the optics, "
                               "else a network trained for the image, each only if the physics check passes it, "
                               "else RL), zoo, network, or rl."),
    budget: str = typer.Option(None, "--budget", help="Optional wall-time cap on training, e.g. 10m. The default "
                               "budget is the step count, which fits 10 minutes of a 2-core CPU."),
    steps: int = typer.Option(None, "--steps", help="Training steps (default 600 in 3D, 1500 in 2D)."),
    photons: float = typer.Option(None, "--photons", help="Override: bright level in photo-electrons."),
    density: float = typer.Option(None, "--density", help="Override: share of voxels holding structure (0-1)."),
    specimen_share: float = typer.Option(None, "--specimen-share", help="Share of training pairs re-imaged from "
                                         "the specimen's own RL estimate (0: phantoms only; default 1 in 2D, "
                                         "0.5 in 3D)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic data and the training."),
    threads: int = typer.Option(None, "--threads", help="Torch CPU threads during training."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    cache: Path = typer.Option(None, "--cache", help="Model cache folder (default $LUCYD_CACHE or ~/.cache/lucyd)."),
    cluster: str = typer.Option(None, "--cluster", help="Prediction stage: " + CLUSTER_HELP),
    max_memory: str = typer.Option(None, "--max-memory", help="Prediction stage: " + MAX_MEMORY_HELP),
    report: bool = typer.Option(True, "--report/--no-report", help="Write <output>.html with figures."),
    sample: bool = typer.Option(False, "--sample", help="Restore the built-in sample (a synthetic widefield "
                                "specimen with its ground truth) into the folder -o."),
    same_psf: bool = typer.Option(False, "--same-psf", help="Use the one --psf (or --wavelength) for every channel."),
) -> None:
    """Restore raw images with a network trained on synthetic data calibrated to them, checked with physics."""
    from lucyd.restore import RestoreConfig
    from lucyd.restore.files import restore_files

    cfg = RestoreConfig.build(method=method, budget_s=parse_duration(budget) if budget else None, steps=steps,
                              photons=photons,
                              density=density, specimen_share=specimen_share, seed=seed, threads=threads, device=device,
                              cache_dir=str(cache) if cache else None)
    if sample:
        if inputs:
            raise InputError("inputs: --sample restores the built-in sample; give no input files with it")
        from lucyd.restore.sample_run import run_sample

        table = run_sample(output, cfg)
        typer.echo(table)
        return
    if not inputs:
        raise InputError("inputs: give at least one image (or --sample)")
    vs = parse_float_tuple(voxel_size, "voxel_size") if voxel_size else None
    if len(inputs) == 1 and (len(psf or []) > 1 or "," in (wavelength or "") or is_hyperstack(inputs[0])):
        from lucyd.restore.volumes import restore_volumes_file

        volumes = volume_options(inputs[0], psf, wavelength=wavelength, na=na, ni=ni, psf_model=psf_model,
                                 same_psf=same_psf)
        cluster, budget = cluster_settings(cluster, max_memory)
        out = restore_volumes_file(inputs[0], output, **volumes, config=cfg, voxel_size=vs, cluster=cluster,
                                   max_memory=budget)
        typer.echo(f"wrote {out} (every (t, c) volume); records in {out}.restore.json")
        return
    if len(psf or []) > 1:
        raise InputError("--psf: several PSFs are for the channels of one multichannel input")
    psf = psf[0] if psf else None
    optics = None
    if psf is None:
        missing = [n for n, v in (("--na", na), ("--wavelength", wavelength)) if v is None]
        if missing:
            raise InputError(f"psf: give --psf, or a model PSF with {' and '.join(missing)}")
        from lucyd.psf.channels import parse_wavelengths

        optics = {"na": na, "wavelength": parse_wavelengths(wavelength)[0], "ni": ni, "model": psf_model}
    import json

    cluster, budget = cluster_settings(cluster, max_memory)
    paths = restore_files(inputs, output, psf=psf, optics=optics, config=cfg, voxel_size=vs, report=report,
                          cluster=cluster, max_memory=budget)
    records = [json.loads(p.with_name(p.name + ".restore.json").read_text()) for p in paths]
    _print_summary(paths, records)
