"""Denoising with lucyd's networks: pair folders, a classic baseline, and evaluation.

Denoising is trained like every other task, from a folder of ``raw/`` + ``gt/`` pairs
(:func:`lucyd.train.train`, e.g. ``lucyd train --model care --data DIR``): synthetic low/high
photon pairs from :func:`lucyd.synth.make_dataset` with ``task="denoising"`` (CARE's recipe,
Weigert et al., Nature Methods 2018), or real pairs such as the Widefield2SIM (W2S) set (Zhou
et al., "W2S: microscopy data with joint denoising and super-resolution for widefield to SIM
mapping", ECCV Workshops 2020): single noisy frames ``input_avg1_<fov>_<ch>.tif`` and the
400-frame averages ``target_avg400_<fov>_<ch>.tif``.

The W2S images were contrast-stretched to 0–255 one by one, so raw and target differ by an
unknown affine intensity map: evaluate with :func:`lucyd.metrics.evaluate`, which fits the
prediction affinely onto the percentile-normalised target (CSBDeep's ``normalize_minmse``)
before PSNR / SSIM. :func:`pair_folder` builds a ``raw/`` + ``gt/`` view of such files with
symbolic links (no copy) in a folder the caller chooses, never inside the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage

import lucyd
from lucyd.errors import FileFormatError, InputError
from lucyd.io import read_image, write_image
from lucyd.io.atomic import atomic_path
from lucyd.metrics import evaluate
from lucyd.train import TrainConfig, load_model, train
from lucyd.validation import as_image

#: W2S file-name patterns: the single noisy frame and the 400-frame average
W2S_RAW = re.compile(r"^input_avg1_(?P<name>.+)\.tiff?$", re.IGNORECASE)
W2S_GT = re.compile(r"^target_avg400_(?P<name>.+)\.tiff?$", re.IGNORECASE)


def w2s_pairs(directory: str | Path) -> dict[str, tuple[Path, Path]]:
    """The W2S denoising pairs of a folder, ``{"<fov>_<ch>": (raw_path, target_path)}``.

    Parameters
    ----------
    directory : str or Path
        Folder with ``input_avg1_<fov>_<ch>.tif`` and ``target_avg400_<fov>_<ch>.tif`` files.

    Returns
    -------
    dict
        Sorted by name; only names present as both input and target.

    Raises
    ------
    FileFormatError
        Missing folder, or no complete pair in it.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileFormatError(f"{root}: no such folder (expected W2S input_avg1_*/target_avg400_* files)")
    raws, gts = {}, {}
    for p in root.iterdir():
        m = W2S_RAW.match(p.name)
        if m:
            raws[m["name"]] = p
        m = W2S_GT.match(p.name)
        if m:
            gts[m["name"]] = p
    names = sorted(set(raws) & set(gts))
    if not names:
        raise FileFormatError(f"{root}: no W2S pairs (input_avg1_NAME.tif + target_avg400_NAME.tif)")
    return {n: (raws[n], gts[n]) for n in names}


def pair_folder(pairs: Mapping[str, tuple[str | Path, str | Path]], out_dir: str | Path, *,
                include: Iterable[str] | None = None, exclude: Iterable[str] = (),
                link: bool = True, overwrite: bool = False) -> Path:
    """A ``raw/`` + ``gt/`` training folder made of links to existing image files.

    ``out_dir/raw/NAME.ext`` → the raw file and ``out_dir/gt/NAME.ext`` → the target file, for
    each selected name; :func:`lucyd.synth.load_pairs` (hence :func:`lucyd.train.train` and
    ``lucyd train --data``) reads the folder as usual. Nothing is copied unless the file system
    refuses symbolic links (or ``link=False``). Use a folder outside the repository.

    Parameters
    ----------
    pairs : mapping of str to (path, path)
        ``{name: (raw_path, gt_path)}``, e.g. :func:`w2s_pairs`.
    out_dir : str or Path
        Folder to create (``raw/`` and ``gt/`` inside).
    include : iterable of str, optional
        Only these names (default: all).
    exclude : iterable of str
        Leave these names out (e.g. a held-out test image).
    link : bool
        Symbolic links (default); ``False`` copies the files.
    overwrite : bool
        Replace existing ``raw/`` and ``gt/`` in ``out_dir``.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InputError
        Unknown names in ``include`` / ``exclude``, nothing selected, an existing pair folder
        without ``overwrite``.
    FileFormatError
        A listed file does not exist.
    """
    out = Path(out_dir)
    names = list(pairs)
    inc = list(include) if include is not None else names
    exc = set(exclude)
    unknown = sorted((set(inc) | exc) - set(names))
    if unknown:
        raise InputError(f"pair names not found: {', '.join(unknown)} (available: "
                         f"{', '.join(names)})")
    chosen = [n for n in inc if n not in exc]
    if not chosen:
        raise InputError("no pairs selected (everything excluded)")
    if (out / "raw").exists() or (out / "gt").exists():
        if not overwrite:
            raise InputError(f"{out}: already has raw/ or gt/; use overwrite or another folder")
        for sub in ("raw", "gt"):
            shutil.rmtree(out / sub, ignore_errors=True)
    for sub in ("raw", "gt"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for name in chosen:
        for sub, src in zip(("raw", "gt"), pairs[name], strict=True):
            src = Path(src).resolve()
            if not src.is_file():
                raise FileFormatError(f"{src}: no such file")
            ext = "".join(src.suffixes[-2:]) if src.name.lower().endswith(".ome.tif") else src.suffix
            dst = out / sub / f"{name}{ext}"
            if link:
                try:
                    os.symlink(src, dst)
                    continue
                except OSError:
                    pass
            shutil.copyfile(src, dst)
    return out


def w2s_pair_folder(w2s_dir: str | Path, out_dir: str | Path, *,
                    include: Iterable[str] | None = None, exclude: Iterable[str] = (),
                    link: bool = True, overwrite: bool = False) -> Path:
    """:func:`pair_folder` of the W2S pairs in ``w2s_dir`` (see :func:`w2s_pairs`)."""
    return pair_folder(w2s_pairs(w2s_dir), out_dir, include=include, exclude=exclude,
                       link=link, overwrite=overwrite)


def gaussian_denoise(image, sigma: float | tuple[float, ...] = 1.0) -> np.ndarray:
    """Classic baseline: Gaussian smoothing (``scipy.ndimage.gaussian_filter``, reflecting edges).

    Parameters
    ----------
    image : array_like
        (y, x) or (z, y, x).
    sigma : float or tuple
        Standard deviation in pixels (per axis).

    Returns
    -------
    numpy.ndarray
        float32, same shape and intensity scale.
    """


    arr = as_image(image, name="image", dtype=np.float32)
    s = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    if s.size not in (1, arr.ndim) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise InputError(f"sigma: expected 1 or {arr.ndim} finite values >= 0, got {sigma!r}")
    return ndimage.gaussian_filter(arr, s if s.size > 1 else float(s[0]),
                                   mode="reflect").astype(np.float32)


def best_gaussian_sigma(raw, gt, sigmas: Iterable[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
                        ) -> tuple[float, float]:
    """The Gaussian width with the best affine-fitted PSNR against ``gt`` (an oracle baseline).

    Returns
    -------
    (sigma, psnr)
    """

    best = (float("nan"), -np.inf)
    for s in sigmas:
        p = evaluate(gaussian_denoise(raw, s), gt)["psnr"]
        if p > best[1]:
            best = (float(s), float(p))
    return best


def evaluate_restorations(pairs, restorers: Mapping[str, Callable[[np.ndarray], np.ndarray]]
                          ) -> dict[str, dict[str, float]]:
    """Mean affine-fitted PSNR / SSIM / NRMSE of several restorations over (raw, gt) pairs.

    Parameters
    ----------
    pairs : iterable
        Objects with ``raw`` and ``gt`` arrays (:class:`lucyd.synth.ImagePair`) or
        ``(raw, gt)`` tuples.
    restorers : mapping of str to callable
        ``{"raw": lambda x: x, "gaussian": gaussian_denoise, "care": model.predict, ...}``.

    Returns
    -------
    dict
        ``{name: {"psnr": ..., "ssim": ..., "nrmse": ...}}``, means over the pairs
        (:func:`lucyd.metrics.evaluate`, Weigert et al. 2018 convention).
    """

    rows: dict[str, list[dict[str, float]]] = {k: [] for k in restorers}
    for pair in pairs:
        raw, gt = (pair.raw, pair.gt) if hasattr(pair, "raw") else pair
        for key, fn in restorers.items():
            rows[key].append(evaluate(fn(raw), gt))
    return {k: {m: float(np.mean([r[m] for r in v])) for m in ("psnr", "ssim", "nrmse")}
            for k, v in rows.items() if v}


#: CARE for denoising on a CPU budget: CSBDeep's 2D U-Net (depth 2, 32 filters) with 3x3
#: instead of 5x5 kernels, trained on 64² patches — ~0.25 s CPU per step of 16 patches on one
#: core instead of ~3 s for the published 5x5 / 128² recipe, so ~12× more steps in a budget
CARE_DENOISE_NET = {"depth": 2, "first_filters": 32, "kernel_size": 3}


def denoise_config(method: str = "care", *, steps: int = 3000, seed: int = 0, **overrides):
    """The :class:`~lucyd.train.TrainConfig` lucyd recommends for 2D denoising.

    ``method="care"`` (supervised, Weigert et al. 2018): :data:`CARE_DENOISE_NET`, 64² patches,
    batch 16, MAE, Adam 4e-4 decaying exponentially to ~1/8 over ``steps``, flips and 90°
    rotations, the target fitted affinely onto the input and normalised with the input's
    percentiles (``target_norm="fit_to_input"``: raw and target may be contrast-stretched
    independently), no target clipping, one whole image held out for validation (best
    checkpoint kept).

    ``method="n2v"`` (self-supervised, Krull et al. 2019; N2V2 masking, Höck et al. 2022): the
    same network without the residual input connection, trained with the blind-spot loss
    ``"n2v"`` on the noisy images alone.

    Parameters
    ----------
    method : {"care", "n2v"}
    steps : int
        Optimiser steps.
    seed : int
    **overrides
        Any :class:`~lucyd.train.TrainConfig` field.
    """

    if method not in ("care", "n2v"):
        raise InputError(f"method: expected 'care' or 'n2v', got {method!r}")
    base = {
        "model": "care",
        # blind-spot training needs a non-residual output: a residual connection would hand
        # every unmasked pixel's own noise straight to the output at prediction time
        "net_kwargs": {**CARE_DENOISE_NET, "residual": method == "care"},
        "ndim": 2,
        "patch": (64, 64),
        "batch": 16,
        "steps": int(steps),
        "lr": 4e-4,
        "schedule": "exp",
        "lr_decay": 0.5,
        "lr_decay_steps": max(1, int(steps) // 3),
        "loss": "mae" if method == "care" else "n2v",
        "norm_percentiles": (1.0, 99.8),
        "target_norm": "fit_to_input" if method == "care" else "percentile",
        "clip_gt": False,
        "augment": True,
        "patch_rejection": "none",
        "same_image_batch": False,
        "val_fraction": 0.25,
        "val_interval": max(1, int(steps) // 15),
        "val_patches": 32,
        "bn_recalibration": 0,
        "threads": 1,
        "seed": int(seed),
        "device": "cpu",
    }
    base.update(overrides)
    return TrainConfig(**base)


def train_care(data_dir: str | Path, model_dir: str | Path, *, steps: int = 3000, seed: int = 0,
               overwrite: bool = False, **overrides) -> Path:
    """Train CARE for denoising on a ``raw/`` + ``gt/`` folder with :func:`denoise_config`.

    Weigert et al., "Content-aware image restoration", Nature Methods 2018, with the CPU-budget
    network and the input-scale target normalisation of :func:`denoise_config`. Returns the
    model folder (:func:`lucyd.train.load_model`, ``lucyd predict``, ``lucyd denoise --method
    care --model``).
    """

    return train(denoise_config("care", steps=steps, seed=seed, **overrides), data_dir, model_dir,
                 overwrite=overwrite)


def _image_name(path: Path) -> str:
    name = path.name
    for ext in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def train_n2v(images: Iterable[str | Path], model_dir: str | Path, *, steps: int = 2000,
              seed: int = 0, overwrite: bool = False, **overrides) -> Path:
    """Train a Noise2Void denoiser on noisy images alone (no clean targets).

    Blind-spot training (Krull et al., "Noise2Void – learning denoising from single noisy
    images", CVPR 2019) with N2V2's median replacement (Höck et al., ECCV Workshops 2022): the
    loss ``"n2v"`` masks ~0.2 % of each patch and scores the prediction only there, against the
    original noisy values (:mod:`lucyd.n2v`). The images are linked as both ``raw/`` and
    ``gt/`` of a temporary pair folder and trained with :func:`denoise_config` ("n2v"); with
    two or more images one is held out for validation (masked loss), with one image the last
    quarter of its longest axis. Training on the very images to be denoised is legitimate here
    (no target is ever seen) and usually best.

    Parameters
    ----------
    images : iterable of path
        Noisy images (2D; TIFF, OME-TIFF, Zarr, npy), distinct names.
    model_dir : str or Path
        Model folder to write.
    steps, seed, overwrite, **overrides
        See :func:`denoise_config` and :func:`lucyd.train.train`.

    Returns
    -------
    Path
        ``model_dir``.
    """


    paths = [Path(p) for p in images]
    if not paths:
        raise InputError("train_n2v: no images given")
    names = [_image_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise InputError(f"train_n2v: image names must be distinct, got {', '.join(names)}")
    cfg = denoise_config("n2v", steps=steps, seed=seed, **overrides)
    with tempfile.TemporaryDirectory(prefix="lucyd_n2v_") as tmp:
        folder = pair_folder({n: (p, p) for n, p in zip(names, paths, strict=True)}, tmp)
        return train(cfg, folder, model_dir, overwrite=overwrite)


#: methods of :func:`denoise_file`
DENOISE_METHODS = ("gaussian", "care", "n2v")


def denoise_file(input_path: str | Path, output_path: str | Path, *, method: str,
                 model: str | Path | None = None, sigma: float | None = None,
                 overwrite: bool = False, progress: bool = False) -> Path:
    """Denoise one image file into ``output_path`` and write ``<output>.denoise.json`` beside it.

    Parameters
    ----------
    input_path, output_path : str or Path
        Image files (TIFF, OME-TIFF, Zarr, npy); the output is float32 in the input's
        intensity scale, with the input's voxel size.
    method : {"gaussian", "care", "n2v"}
        ``gaussian``: :func:`gaussian_denoise` with ``sigma`` (px); ``care`` / ``n2v``: the
        trained model folder ``model`` (:func:`train_care`, :func:`train_n2v`, ``lucyd train``).
    model : str or Path, optional
        Model folder (care, n2v).
    sigma : float, optional
        Gaussian width in pixels (gaussian).
    overwrite : bool
        Replace an existing output.

    Returns
    -------
    Path
        ``output_path``.

    Raises
    ------
    InputError
        Unknown method, missing model / sigma, output equal to the input, existing output
        without ``overwrite``, a model of the wrong dimensionality.
    FileFormatError
        Unreadable input or model.
    """


    inp, out = Path(input_path), Path(output_path)
    if method not in DENOISE_METHODS:
        raise InputError(f"method: expected one of {', '.join(DENOISE_METHODS)}, got {method!r}")
    if method == "gaussian" and sigma is None:
        raise InputError("method gaussian needs a width: --sigma PIXELS")
    if method != "gaussian" and model is None:
        raise InputError(f"method {method} needs a trained model folder: --model DIR")
    if not inp.exists():
        raise InputError(f"{inp}: no such file")
    if out.resolve() == inp.resolve():
        raise InputError(f"{out}: the output would overwrite the input")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: exists; use --overwrite or another name")
    image, meta = read_image(inp)
    record: dict = {"input": str(inp), "output": str(out), "method": method,
                    "lucyd_version": lucyd.__version__}
    if method == "gaussian":
        result = gaussian_denoise(image, sigma)
        record["sigma_px"] = sigma
    else:

        net = load_model(model)
        result = net.predict(np.asarray(image, dtype=np.float32), progress=progress)
        record["model"] = str(Path(model).resolve())
        record["network"] = net.name
    write_image(out, np.asarray(result, dtype=np.float32), meta)
    record["voxel_size"] = list(meta.voxel_size) if meta.voxel_size else None
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with atomic_path(out.with_name(out.name + ".denoise.json")) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return out


__all__ = [
    "CARE_DENOISE_NET",
    "DENOISE_METHODS",
    "best_gaussian_sigma",
    "denoise_config",
    "denoise_file",
    "evaluate_restorations",
    "gaussian_denoise",
    "pair_folder",
    "train_care",
    "train_n2v",
    "w2s_pair_folder",
    "w2s_pairs",
]
