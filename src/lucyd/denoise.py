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

import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from lucyd.errors import FileFormatError, InputError

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
    from scipy import ndimage

    from lucyd.validation import as_image

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
    from lucyd.metrics import evaluate

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
    from lucyd.metrics import evaluate

    rows: dict[str, list[dict[str, float]]] = {k: [] for k in restorers}
    for pair in pairs:
        raw, gt = (pair.raw, pair.gt) if hasattr(pair, "raw") else pair
        for key, fn in restorers.items():
            rows[key].append(evaluate(fn(raw), gt))
    return {k: {m: float(np.mean([r[m] for r in v])) for m in ("psnr", "ssim", "nrmse")}
            for k, v in rows.items() if v}


__all__ = [
    "best_gaussian_sigma",
    "evaluate_restorations",
    "gaussian_denoise",
    "pair_folder",
    "w2s_pair_folder",
    "w2s_pairs",
]
