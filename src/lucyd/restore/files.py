"""File-level ``lucyd restore``: PSF from a file or from optics, one model for many inputs, reports."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lucyd.errors import InputError
from lucyd.io import image_info, read_image, write_image
from lucyd.io.atomic import atomic_path
from lucyd.io.metadata import ImageMetadata
from lucyd.io.outputs import check_output_path
from lucyd.psf.channels import psf_from_optics
from lucyd.restore.pipeline import RestoreConfig, RestoreResult, restore


def _output_paths(inputs: Sequence[Path], output: Path) -> list[Path]:
    if len(inputs) == 1:
        return [output]
    if output.suffix and not output.is_dir():
        raise InputError(f"output: with {len(inputs)} inputs, -o must be a folder, got {output}")
    names = [p.name for p in inputs]
    if len(set(names)) != len(names):
        raise InputError("inputs: two inputs have the same file name; they would share one output")
    return [output / p.name for p in inputs]


def save_restore_report(result: RestoreResult, raw: np.ndarray, path: Path, voxel_size=None) -> Path:
    """Write ``path`` (HTML): panels raw / RL / network, physics-check flux maps, the record."""
    # lazy: the report loads matplotlib, needed only when a report is written
    from lucyd.report.figures import save_panel_figure
    from lucyd.report.html import write_html_report

    fig = path.with_suffix(".png")
    dark = result.record["calibration"]["noise"]["dark_level"]
    panels = {"raw (above dark)": raw - np.float32(dark)}
    panels.update({f"{k} (chosen)" if k == result.record["chosen"] else k: v for k, v in result.candidates.items()})
    save_panel_figure(panels, fig, voxel_size=voxel_size, title="lucyd restore",
                      reference=len(panels) - 1, intensity_label="counts above dark level")
    maps = {k: np.abs(v) for k, v in result.flux_maps.items()}
    map_fig = path.with_name(path.stem + "_check.png")
    save_panel_figure(maps, map_fig, title="physics check: |block flux residual| (standard errors)",
                      display_range=(0.0, max(3.0, float(max(m.max() for m in maps.values())))),
                      cmap="viridis", intensity_label="standard errors",
                      caption="Each pixel is one block of the image; values above ~3 mark light the "
                      "restoration fails to explain.")
    check = result.record.get("physics_check", {})
    rows = [{"method": k, "voxel χ²": v["chi2"], "flux χ²": v["flux_chi2"], "worst block (SE)": v["worst_block_z"]}
            for k, v in check.items() if isinstance(v, dict) and "chi2" in v]
    sections = [
        {"heading": "Restoration", "text": f"Chosen: {result.record['chosen']} ({result.record['why']}).",
         "images": [fig]},
        {"heading": "Physics self-check",
         "text": check.get("verdict", "Only Richardson–Lucy was computed.") + "\n\nThe restoration is re-blurred "
         "with the PSF and compared with the raw data under the estimated Poisson–Gaussian noise; 1 means it "
         "explains the data as well as the truth would, values well above 1 mean missing or invented light.",
         "table": rows, "images": [map_fig]},
        {"heading": "Calibration and choices", "params": result.record},
    ]
    return write_html_report(path, title="lucyd restore", sections=sections)


def restore_files(inputs: Sequence[str | Path], output: str | Path, *, psf=None, optics: dict | None = None,
                  config: RestoreConfig | None = None, voxel_size=None, report: bool = False,
                  progress: bool = True, cluster=None, max_memory=None) -> list[Path]:
    """Restore image files; one model (the first input's calibration) serves every input.

    Parameters
    ----------
    inputs : sequence of path
        Raw images sharing one PSF.
    output : path
        Output file (one input) or folder (several; same file names).
    psf : path or ndarray, optional
        PSF file or array. Or give ``optics`` = ``{"na":, "wavelength":, "ni":, "model":}``.
    config : RestoreConfig, optional
    voxel_size : sequence of float, optional
        Overrides the files' voxel size.
    report : bool
        Also write ``<output>.html`` (+ PNG figures).
    cluster, max_memory
        Where the network's tiles run and the memory of one tile (see :func:`restore`).

    Returns
    -------
    list of Path
        The written restorations; each has ``<name>.restore.json`` beside it.
    """
    in_paths = [Path(p) for p in inputs]
    if not in_paths:
        raise InputError("inputs: give at least one image")
    if (psf is None) == (optics is None):
        raise InputError("psf: give either a PSF file (--psf) or the optics (--na, --wavelength, --ni)")
    out_paths = _output_paths(in_paths, Path(output))
    sources = [*in_paths, psf if isinstance(psf, str | Path) else None]
    if len(in_paths) > 1:
        check_output_path(output, sources, folder=True)
    for src, dst in zip(in_paths, out_paths, strict=True):
        # before any training: an output over an input, an unwritable folder or a full disk
        check_output_path(dst, sources, expected_bytes=4 * math.prod(image_info(src).shape))
    cfg = config or RestoreConfig()
    psf_voxel = None
    if isinstance(psf, str | Path):
        psf_arr, psf_meta = read_image(psf)
        psf_voxel = psf_meta.voxel_size
        psf = psf_arr
    written = []
    model_calibration = None  # the first input's: one model serves all inputs
    for src, dst in zip(in_paths, out_paths, strict=True):
        image, meta = read_image(src)
        vs = tuple(voxel_size) if voxel_size is not None else meta.voxel_size
        p = psf if psf is not None else psf_from_optics(image.shape, vs, **optics)
        result = restore(image, p, config=cfg, voxel_size=vs, psf_voxel_size=psf_voxel, progress=progress,
                         model_calibration=model_calibration, cluster=cluster, max_memory=max_memory)
        model_calibration = result.model_calibration
        result.record.update({"input": str(src), "output": str(dst),
                              "psf": str(psf) if isinstance(psf, str | Path) else ("optics" if optics else "array")})
        dst.parent.mkdir(parents=True, exist_ok=True)
        out_meta = ImageMetadata(axes=meta.axes, voxel_size=vs) if vs is not None else meta
        write_image(dst, result.image, out_meta)
        with atomic_path(dst.with_name(dst.name + ".restore.json")) as tmp:
            tmp.write_text(json.dumps(result.record, indent=2, default=str))
        if report:
            save_restore_report(result, np.asarray(image, np.float32), dst.with_name(dst.name + ".html"), vs)
        written.append(dst)
    return written
