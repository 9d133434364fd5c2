"""Synthetic training-set folders: generation (:func:`make_dataset`); loading
(:func:`load_pairs`) lives in :mod:`lucyd.synth.pairs` (real pairs use it too).

Folder layout (the same for synthetic and for real, user-supplied pairs)::

    DIR/raw/0000.tif      degraded input (camera counts)
    DIR/gt/0000.tif       target (same name = same pair)
    DIR/psf.tif           the PSF used (synthetic sets that use one)
    DIR/dataset.json      every parameter, the base seed, per-file seeds, lucyd version

Each pair ``i`` is generated from its own seed, derived from the base seed with
``np.random.SeedSequence(seed).spawn``, so the result does not depend on the number of
workers, on the order of completion or on interruptions: an interrupted run resumes and
produces exactly the files an uninterrupted run would have.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from lucyd.config import JobConfig
from lucyd.errors import FileFormatError, InputError
from lucyd.io import ImageMetadata, atomic_path, read_image, write_image
from lucyd.progress import progress as progress_bar
from lucyd.psf import make_psf
from lucyd.synth.degrade import TASKS, degrade
from lucyd.synth.pairs import IMAGE_SUFFIXES, ImagePair, load_pairs  # noqa: F401 (public names)
from lucyd.synth.phantoms import KINDS, phantom, phantom_parameters
from lucyd.validation import as_psf, as_voxel_size

#: voxel size (µm) assumed when neither the configuration nor the PSF file gives one
DEFAULT_VOXEL_UM = 0.1


class SynthConfig(JobConfig):
    """Every parameter of a synthetic training set (saved as ``dataset.json``).

    Attributes
    ----------
    kind : {"mixed", "tubules", "granules", "nuclei"}
        Phantom kind (see :func:`lucyd.synth.phantom`).
    task : {"deconvolution", "denoising", "isotropic"}
        Degradation (see :func:`lucyd.synth.degrade`).
    n : int
        Number of pairs.
    shape : tuple of int
        ``(z, y, x)`` or ``(y, x)`` in pixels.
    photons : float
        Photons per phantom unit (input photon count for denoising). RLN recipe: 5.
    read_noise : float
        Read-noise sigma, electrons. RLN recipe: 0.5.
    background : float
        Phantom background, phantom units (RLN recipe: 30), added to the ground truth.
    camera_background : float
        Extra background photons per pixel added at acquisition.
    high_photons : float or None
        Denoising target photon count (None: noiseless target).
    z_factor, axial_sigma : float
        Isotropic task: axial sub-sampling factor and Gaussian axial blur sigma (px).
    seed : int
        Base seed; pair ``i`` uses ``SeedSequence(seed).spawn(n)[i]``.
    psf : str or None
        PSF file (any format of :func:`lucyd.io.read_image`). Deconvolution and denoising
        blur with it; for the isotropic task it is the anisotropic acquisition PSF (the raw
        is ``gt (*) psf`` sub-sampled along z, the target ``gt``); without one the isotropic
        raw is blurred along z by a Gaussian of ``axial_sigma`` px.
    psf_model, na, wavelength, ni, psf_shape : optional
        Model PSF instead of a file: :func:`lucyd.psf.make_psf` (wavelength in µm).
        ``psf_shape`` defaults to the image shape made odd.
    voxel_size : tuple of float or None
        µm per pixel, same order as ``shape``; default: the PSF file's, else 0.1 µm.
    phantom_params : dict
        Kind-specific phantom parameters (``lucyd.synth.phantom_parameters(kind)``).
    density : (float, float)
        Range of the object-density factor (:func:`lucyd.synth.phantom`'s ``density``): pair
        ``i`` draws its own factor log-uniformly from ``[lo, hi]`` (a single number: every pair
        the same). A wide range such as ``(0.01, 1)`` mixes sparse and crowded scenes, so that
        a network also learns to keep empty background flat where out-of-focus haze and noise
        dominate its normalised input (sparse specimens, e.g. filaments or vesicles).
    perlin : dict or None
        Smooth background options (``amplitude``, ``scale``, ``octaves``, ``persistence``).
    """

    kind: Literal["mixed", "tubules", "granules", "nuclei"] = "mixed"
    task: Literal["deconvolution", "denoising", "isotropic"] = "deconvolution"
    n: int = Field(20, ge=1)
    shape: tuple[int, ...] = (64, 128, 128)
    photons: float = Field(5.0, gt=0, allow_inf_nan=False)
    read_noise: float = Field(0.5, ge=0, allow_inf_nan=False)
    background: float = Field(30.0, ge=0, allow_inf_nan=False)
    camera_background: float = Field(0.0, ge=0, allow_inf_nan=False)
    high_photons: float | None = Field(None, gt=0, allow_inf_nan=False)
    z_factor: float = Field(4.0, ge=1, allow_inf_nan=False)
    axial_sigma: float | None = Field(None, gt=0, allow_inf_nan=False)
    seed: int = Field(0, ge=0)
    psf: str | None = None
    psf_model: str | None = None
    na: float | None = Field(None, gt=0, allow_inf_nan=False)
    wavelength: float | None = Field(None, gt=0, allow_inf_nan=False)
    ni: float | None = Field(None, gt=0, allow_inf_nan=False)
    psf_shape: tuple[int, ...] | None = None
    voxel_size: tuple[float, ...] | None = None
    phantom_params: dict[str, Any] = Field(default_factory=dict)
    density: tuple[float, float] = (1.0, 1.0)
    perlin: dict[str, float] | None = None

    @field_validator("density", mode="before")
    @classmethod
    def _density(cls, v):
        values = (v, v) if isinstance(v, int | float) else tuple(v)
        values = values * 2 if len(values) == 1 else values
        if len(values) != 2 or not all(isinstance(x, int | float) and 0 < x < float("inf") for x in values):
            raise ValueError(f"expected one positive number or a range (lo, hi), got {v!r}")
        if values[0] > values[1]:
            raise ValueError(f"expected lo <= hi, got {v!r}")
        return values

    @field_validator("shape")
    @classmethod
    def _shape(cls, v):
        if len(v) not in (2, 3) or any(s < 4 for s in v):
            raise ValueError(f"expected 2 or 3 sizes of at least 4 px, got {v}")
        return v

    @field_validator("psf_shape")
    @classmethod
    def _psf_shape(cls, v):
        if v is not None and (len(v) not in (2, 3) or any(s < 1 for s in v)):
            raise ValueError(f"expected 2 or 3 positive sizes, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        ndim = len(self.shape)
        if self.voxel_size is not None:
            try:
                as_voxel_size(self.voxel_size, ndim)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        if self.psf is not None and self.psf_model is not None:
            raise ValueError("give either psf (a file) or psf_model, not both")
        if self.psf_model is not None:
            missing = [k for k in ("na", "wavelength") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"psf_model needs {', '.join(missing)}")
            if self.psf_shape is not None and len(self.psf_shape) != ndim:
                raise ValueError(f"psf_shape has {len(self.psf_shape)} sizes, shape has {ndim}")
        if self.task == "deconvolution" and self.psf is None and self.psf_model is None:
            raise ValueError("the deconvolution task needs a PSF: psf (file) or psf_model")
        if self.task == "denoising" and self.high_photons is not None:
            if self.high_photons <= self.photons:
                raise ValueError("high_photons must exceed photons")
        if self.task == "isotropic" and self.shape[0] < 2 * self.z_factor:
            raise ValueError(f"z_factor {self.z_factor:g} leaves < 2 planes along axis 0")
        valid = phantom_parameters(self.kind)
        unknown = sorted(set(self.phantom_params) - set(valid))
        if unknown:
            raise ValueError(f"unknown phantom parameter(s) for {self.kind!r}: "
                             f"{', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        return self


# --------------------------------------------------------------------------- helpers

def file_seeds(seed: int, n: int) -> list[int]:
    """Per-pair integer seeds: ``SeedSequence(seed).spawn(n)[i].generate_state(1, uint64)``.

    Pair ``i``'s seed does not depend on ``n`` (spawned children are ``spawn_key=(i,)``).
    """
    children = np.random.SeedSequence(seed).spawn(n)
    return [int(c.generate_state(1, np.uint64)[0]) for c in children]


def _axes(ndim: int) -> str:
    return "ZYX" if ndim == 3 else "YX"


def resolve_psf(config: SynthConfig) -> tuple[np.ndarray | None, tuple[float, ...]]:
    """The PSF of ``config`` (file or model, normalised) and the voxel size in µm."""
    ndim = len(config.shape)
    voxel = as_voxel_size(config.voxel_size, ndim) if config.voxel_size is not None else None
    psf = None
    if config.psf is not None:
        arr, meta = read_image(config.psf)
        psf = as_psf(np.asarray(arr), image_ndim=ndim, name=f"psf ({config.psf})")
        if voxel is None and meta.voxel_size is not None:
            voxel = as_voxel_size(meta.voxel_size, ndim)
    voxel = voxel if voxel is not None else (DEFAULT_VOXEL_UM,) * ndim
    if config.psf_model is not None:

        shape = config.psf_shape or tuple(2 * (s // 2) + 1 for s in config.shape)
        optics = {"na": config.na, "wavelength": config.wavelength}
        if config.ni is not None:
            optics["ni"] = config.ni
        psf = as_psf(make_psf(config.psf_model, shape, voxel, **optics), image_ndim=ndim)
    return psf, voxel


def make_pair(config: SynthConfig, file_seed: int, psf: np.ndarray | None = None,
              device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Generate one ``(raw, target)`` pair of ``config`` from its per-file seed.

    ``make_pair(cfg, file_seeds(cfg.seed, cfg.n)[i], psf)`` reproduces pair ``i`` of
    :func:`make_dataset` exactly (phantom and noise drawn from one generator, in that order).
    """
    rng = np.random.default_rng(file_seed)
    lo, hi = config.density
    # drawn only for a range, so that fixed-density sets keep their random streams
    density = lo if lo == hi else float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    gt = phantom(config.kind, config.shape, seed=rng, background=config.background,
                 perlin=config.perlin, density=density, **config.phantom_params)
    if config.task == "isotropic":
        # the PSF of an isotropic set is the (anisotropic) acquisition PSF; target = gt
        return degrade(gt, "isotropic", axial_psf=psf, photons=config.photons,
                       read_noise=config.read_noise, background=config.camera_background,
                       seed=rng, z_factor=config.z_factor, axial_sigma=config.axial_sigma,
                       device=device)
    return degrade(gt, config.task, psf=psf, photons=config.photons,
                   read_noise=config.read_noise, background=config.camera_background,
                   seed=rng, high_photons=config.high_photons, z_factor=config.z_factor,
                   axial_sigma=config.axial_sigma, device=device)


def _pair_paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / "gt" / f"{name}.tif", out_dir / "raw" / f"{name}.tif"


def _write_pair(config_json: str, name: str, file_seed: int, psf, voxel, out_dir: str,
                device: str = "auto") -> str:
    """Worker: generate one pair and write gt, then raw (each atomically)."""
    config = SynthConfig.model_validate_json(config_json)
    raw, target = make_pair(config, file_seed, psf, device=device)
    meta = ImageMetadata(_axes(raw.ndim), tuple(voxel))
    gt_path, raw_path = _pair_paths(Path(out_dir), name)
    write_image(gt_path, target, meta)
    write_image(raw_path, raw, meta)
    return name


def _init_worker() -> None:
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")

    torch.set_num_threads(1)


def _start_method() -> str:
    """"fork" on Linux (fast start, works without a ``__main__`` guard) unless CUDA is already
    initialised in this process (CUDA cannot be used in forked children); else "spawn".
    Override with the environment variable ``LUCYD_MP_START``."""
    if os.environ.get("LUCYD_MP_START"):
        return os.environ["LUCYD_MP_START"]
    if not sys.platform.startswith("linux"):
        return "spawn"

    return "spawn" if torch.cuda.is_initialized() else "fork"


_PARTIAL = re.compile(r"^\..*\.partial-")


def _clean_partials(folder: Path) -> None:
    """Remove temporary files an interrupted (killed) run may have left behind."""
    if folder.is_dir():
        for p in folder.iterdir():
            if _PARTIAL.match(p.name):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)


def _manifest(config: SynthConfig, voxel, seeds: list[int], names: list[str],
              has_psf: bool) -> str:
    payload = json.loads(config.to_json())
    payload.update({
        "axes": _axes(len(config.shape)),
        "voxel_size": list(voxel),
        "psf_file": "psf.tif" if has_psf else None,
        "units": {
            "raw": "camera counts (photo-electrons, gain 1, offset 0)",
            "gt": ("raw counts (same expected value as raw)" if config.task == "denoising"
                   else "phantom units"),
        },
        "recipes": "mixed: Li et al. 2022 (RLN); denoising / isotropic: Weigert et al. 2018 (CARE)",
        "seed_derivation": "numpy SeedSequence(seed).spawn(n)[i].generate_state(1, uint64)[0]",
        "files": [{"name": nm, "seed": s} for nm, s in zip(names, seeds, strict=True)],
    })
    return json.dumps(payload, indent=2)


def _check_resume(out_dir: Path, config: SynthConfig) -> None:
    manifest = out_dir / "dataset.json"
    try:
        old = json.loads(manifest.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise FileFormatError(f"{manifest}: unreadable dataset description; "
                              "use overwrite to regenerate the folder") from None
    new = config.model_dump(mode="json")
    # a setting missing from an older manifest had its default value then
    old = {**type(config).model_construct().model_dump(mode="json"), **old}
    diffs = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new
             if k != "n" and old.get(k) != new[k]]
    diffs += [f"{k}: unknown" for k in old if k not in new]
    if diffs:
        raise InputError(f"{out_dir}: holds a dataset made with different parameters "
                         f"({'; '.join(diffs)}); use overwrite (--overwrite) or another folder")
    if int(old.get("n", 0)) > config.n:
        raise InputError(f"{out_dir}: holds {old.get('n')} pairs but n={config.n}; "
                         "use overwrite (--overwrite) or n >= the existing count")


def make_dataset(config: SynthConfig, out_dir: str | Path, *, workers: int | None = None,
                 progress: bool = True, overwrite: bool = False, device: str = "auto") -> Path:
    """Generate a synthetic training set folder (see the module docstring for the layout).

    Parameters
    ----------
    config : SynthConfig
        All parameters (kind, task, n, shape, noise, seed, PSF source, phantom parameters).
    out_dir : str or Path
        Output folder (created). If it holds a dataset made with the same parameters, the
        run resumes: complete pairs (gt and raw both present; files are written atomically,
        gt first) are kept and the missing ones generated. ``n`` may grow on resume.
    workers : int or None
        Processes generating pairs in parallel (default: CPU count, at most the number of
        pairs to do). The files do not depend on it.
    progress : bool
        Show a progress bar (also silenced by ``LUCYD_NO_PROGRESS=1``).
    overwrite : bool
        Delete an existing dataset in ``out_dir`` (raw/, gt/, psf.tif, dataset.json) first.
    device : str
        Device for the convolutions (``"auto"`` = CUDA when present).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InputError
        ``out_dir`` holds a dataset with different parameters (and not ``overwrite``), or
        invalid parameters.
    FileFormatError
        Unreadable PSF file; ``out_dir`` is a file.
    """

    if not isinstance(config, SynthConfig):
        raise InputError(f"config: expected a SynthConfig, got {type(config).__name__}")
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers
                                or workers < 1):
        raise InputError(f"workers: expected a positive integer, got {workers!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileFormatError(f"{out_dir}: exists and is not a folder")
    manifest = out_dir / "dataset.json"
    if overwrite:
        for sub in ("gt", "raw"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
        for f in ("psf.tif", "dataset.json"):
            (out_dir / f).unlink(missing_ok=True)
    elif manifest.exists():
        _check_resume(out_dir, config)
    elif (out_dir / "raw").exists() or (out_dir / "gt").exists():
        raise InputError(f"{out_dir}: has raw/ or gt/ but no dataset.json (not a lucyd synth "
                         "folder); use overwrite (--overwrite) or another folder")

    # fail early (not in a worker) on bad phantom parameter values
    phantom(config.kind, (8,) * len(config.shape), seed=0, perlin=config.perlin,
            **config.phantom_params)
    psf, voxel = resolve_psf(config)
    ndim = len(config.shape)
    seeds = file_seeds(config.seed, config.n)
    width = max(4, len(str(config.n - 1)))
    names = [f"{i:0{width}d}" for i in range(config.n)]
    for sub in ("gt", "raw"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
        _clean_partials(out_dir / sub)
    if psf is not None:
        write_image(out_dir / "psf.tif", psf, ImageMetadata(_axes(ndim), tuple(voxel)))
    with atomic_path(manifest) as tmp:
        tmp.write_text(_manifest(config, voxel, seeds, names, psf is not None))

    todo = [(nm, s) for nm, s in zip(names, seeds, strict=True)
            if not all(p.exists() for p in _pair_paths(out_dir, nm))]
    if not todo:
        return out_dir
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers), len(todo)))
    cfg_json = config.model_dump_json()
    bar = progress_bar(total=len(todo), desc=f"synth {config.kind}/{config.task}",
                       disable=None if progress else True)
    try:
        if workers == 1:
            for nm, s in todo:
                _write_pair(cfg_json, nm, s, psf, voxel, str(out_dir), device)
                bar.update(1)
        else:
            ctx = multiprocessing.get_context(_start_method())
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                pending = {pool.submit(_write_pair, cfg_json, nm, s, psf, voxel, str(out_dir),
                                       device) for nm, s in todo}
                try:
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in done:
                            fut.result()
                            bar.update(1)
                except BaseException:
                    for fut in pending:
                        fut.cancel()
                    raise
    finally:
        bar.close()
    return out_dir


__all__ = ["SynthConfig", "ImagePair", "make_dataset", "make_pair", "load_pairs", "file_seeds",
           "resolve_psf", "KINDS", "TASKS"]
