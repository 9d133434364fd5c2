"""``lucyd restore``: calibrate → train (or reuse) a matched network → restore → check with physics.

The one call a microscopist makes. For an image and its PSF it

1. measures the camera noise, brightness and structure density from the image itself
   (:mod:`lucyd.restore.calibration`);
2. makes synthetic training pairs that match them through the same PSF, and chooses the
   Richardson–Lucy iteration count that restores *those* best (an oracle-free count: the
   synthetic data have ground truth, the specimen has none);
3. trains a small residual U-Net that refines that Richardson–Lucy estimate into the
   ground truth (or reuses the model cached for the same PSF and calibration);
4. restores the image: RL at the chosen count, then the network, then Richardson–Lucy
   iterations started from the network's output until it explains the data at the noise
   level (:func:`data_consistent_rl`, the data-consistency step: the network supplies the
   detail, the physics puts the light back where the data say it is);
5. re-blurs both results with the PSF and scores them against the raw data under the
   estimated noise (:mod:`lucyd.metrics.fidelity`). When the network explains the data worse
   than RL, the record says so and ``method="auto"`` returns RL.

The network sees Richardson–Lucy's estimate, not the raw image, so the physics does the
deconvolution and the network learns only what RL cannot: separating noise from structure
(learned regularisation on top of the physics; in the spirit of the RLN of Li et al., Nature
Methods 2022, and of plug-and-play priors). Its target and input share one normalisation,
so its output is in photo-electrons and carries the data's flux.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from lucyd.config import JobConfig
from lucyd.deconv import prepare_psf
from lucyd.errors import InputError
from lucyd.io import write_image
from lucyd.io.atomic import atomic_path
from lucyd.metrics.fidelity import calibrate_flux, compare_fidelity, data_fidelity
from lucyd.restore.calibration import (
    Calibration,
    calibrate,
    calibrated_pairs,
    plan_training_set,
    specimen_pairs,
)
from lucyd.restore.physics_steps import data_consistent_rl, discrepancy_rl
from lucyd.restore.zoo import load_zoo_model, match_zoo, zoo_refine
from lucyd.train import TrainConfig, load_model, train
from lucyd.validation import as_image

#: bump when the recipe changes, so cached models of an older recipe are not reused
RECIPE_VERSION = 2

Method = Literal["auto", "zoo", "network", "rl"]
#: RL's voxel χ² above which the forward model itself (PSF, noise) is said not to fit the data
MODEL_MISMATCH_CHI2 = 2.0


class RestoreConfig(JobConfig):
    """Every choice of a ``lucyd restore`` job (saved in its record).

    Attributes
    ----------
    method : {"auto", "zoo", "network", "rl"}
        ``auto``: a pretrained zoo model when one fits the optics and noise
        (:func:`lucyd.restore.zoo.match_zoo`) and passes the physics check (no training);
        otherwise a network trained for the image, when it passes the check; otherwise
        Richardson–Lucy. ``zoo``: the fitting zoo model regardless of the check (refused when
        none fits); ``network``: the network trained for the image regardless; ``rl``:
        Richardson–Lucy stopped by the discrepancy principle (no network).
    steps : int or None
        Training steps (None: 600 in 3D, 1,500 in 2D, chosen to fit in 10 minutes of the
        2-core reference CPU).
    budget_s : float or None
        Optional wall-time cap on training (seconds). The budget is the step count (fixed, so
        the result does not depend on the machine's load); a cap that cuts training short is
        recorded (``model.complete`` false) and makes the result load-dependent.
    n_train : int
        Synthetic training volumes (2D: images).
    specimen_share : float or None
        Share of the training pairs whose objects are crops of the specimen's own
        Richardson–Lucy estimate (:func:`lucyd.restore.calibration.specimen_pairs`); the rest
        are phantoms. 0 trains on phantoms only. None: :func:`default_specimen_share` (1 in
        2D, 0.5 in 3D).
    train_shape : tuple of int
        Largest synthetic volume (z, y, x) / image (y, x); clipped to the specimen's shape.
    photons, density : float, optional
        Overrides of the calibration: bright level in photo-electrons, and structure share
        (0–1 of the voxels). None: measured from the image.
    tolerance : float
        Margin of the physics check (see :func:`lucyd.metrics.fidelity.compare_fidelity`).
    data_consistency : bool
        Follow each network's (flux-calibrated) output with Richardson–Lucy iterations started
        from it and stopped by the discrepancy principle (:func:`data_consistent_rl`), so that
        the result explains the data; False returns the network's output as it is.
    seed, threads, device, cache_dir :
        Seed of everything random; torch CPU threads in training; torch device; model cache
        folder (None: ``$LUCYD_CACHE`` or ``~/.cache/lucyd``).
    zoo_dir : str or None
        Folder of zoo models (None: the ones shipped in the package, :data:`lucyd.restore.zoo.ZOO_DIR`).
    """

    error_label = "restore config"

    method: Method = "auto"
    steps: int | None = Field(None, ge=1)
    budget_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    n_train: int = Field(12, ge=2)
    specimen_share: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    train_shape: tuple[int, ...] = (32, 96, 96)
    photons: float | None = Field(None, gt=0, allow_inf_nan=False)
    density: float | None = Field(None, gt=0, lt=1, allow_inf_nan=False)
    tolerance: float = Field(0.25, ge=0, allow_inf_nan=False)
    data_consistency: bool = True
    seed: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    device: str = "auto"
    cache_dir: str | None = None
    zoo_dir: str | None = None


@dataclass
class RestoreResult:
    """A restoration and the record of how it was made.

    ``image`` is float32 in the input's counts above its dark level (add ``record
    ["calibration"]["noise"]["dark_level"]`` for the raw scale); ``candidates`` holds every
    restoration computed (``rl``, ``network``) in the same units; ``flux_maps`` the physics
    check's per-block flux residuals (standard errors) of each.
    """

    image: np.ndarray
    record: dict
    candidates: dict = field(default_factory=dict)
    flux_maps: dict = field(default_factory=dict)
    model_calibration: Calibration | None = None


def cache_root(cache_dir: str | None = None) -> Path:
    """Folder of cached restore models (``$LUCYD_CACHE`` or ``~/.cache/lucyd``)."""
    root = cache_dir or os.environ.get("LUCYD_CACHE") or Path.home() / ".cache" / "lucyd"
    return Path(root) / "restore"


def model_key(psf: np.ndarray, calibration: Calibration, config: RestoreConfig) -> str:
    """Hash of everything a trained restore model depends on."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(psf, np.float32).tobytes())
    h.update(repr(psf.shape).encode())
    recipe = (RECIPE_VERSION, calibration.key(), config.steps, config.n_train, tuple(config.train_shape),
              config.seed, specimen_share(config, psf.ndim))
    h.update(repr(recipe).encode())
    return h.hexdigest()[:16]


def default_steps(ndim: int) -> int:
    return 600 if ndim == 3 else 1500


def default_specimen_share(ndim: int) -> float:
    """Share of specimen-derived training pairs: all of them in 2D, half in 3D.

    In 2D, on the W2S tuning fields (020, 035), training on the specimen's own re-imaged
    structure alone beat the half-phantom set by 0.07 and 0.18 dB after the data-consistency
    step; in 3D the half-phantom set is the one that won on the DAPI
    specimen (``benchmarks/results/restore.md``).
    """
    return 1.0 if ndim == 2 else 0.5


def specimen_share(config: RestoreConfig, ndim: int) -> float:
    """``config.specimen_share``, or the default for ``ndim`` when it is None."""
    return default_specimen_share(ndim) if config.specimen_share is None else float(config.specimen_share)


def _network_config(ndim: int, steps: int, config: RestoreConfig, shape: tuple[int, ...]):

    patch = (16, 48, 48) if ndim == 3 else (96, 96)
    patch = tuple(min(p, (s // 4) * 4) for p, s in zip(patch, shape, strict=True))
    return TrainConfig(
        model="care",
        net_kwargs={"first_filters": 16, "depth": 2, "kernel_size": 3},
        ndim=ndim,
        patch=patch,
        batch=4,
        steps=steps,
        lr=1e-3,
        schedule="exp",
        lr_decay=0.5,
        lr_decay_steps=max(1, steps // 3),
        loss="mse",
        norm_percentiles=(0.0, 99.9),
        target_scale="input",
        clip_gt=False,
        augment=True,
        patch_rejection="none",
        val_fraction=0.15,
        val_interval=max(1, steps // 6),
        val_patches=8,
        time_limit_s=config.budget_s,
        threads=config.threads,
        seed=config.seed,
        device=config.device,
    )


def prepare_restore_model(psf: np.ndarray, calibration: Calibration, image_shape: tuple[int, ...],
                          config: RestoreConfig, folder: Path, *,
                          specimen_estimate: np.ndarray | None = None) -> dict:
    """Make the calibrated training set and train the refining network into ``folder/model``.

    Pairs: phantoms matched to ``calibration`` and, when ``specimen_estimate`` is given, a
    ``config.specimen_share`` of pairs made from it (:func:`specimen_pairs`). Each pair's
    input is its discrepancy-principle RL estimate. Returns the description written to
    ``folder/restore.json`` (plan, pair counts, RL counts, steps).
    """

    ndim = len(image_shape)
    steps = config.steps or default_steps(ndim)
    share = specimen_share(config, ndim)
    n_specimen = int(round(share * config.n_train)) if specimen_estimate is not None else 0
    plan = plan_training_set(calibration, psf, image_shape, n=config.n_train - n_specimen, seed=config.seed,
                             max_shape=tuple(config.train_shape) if ndim == 3 else (256, 256))
    pairs = list(calibrated_pairs(plan, calibration, psf))
    if n_specimen:
        pairs += list(specimen_pairs(specimen_estimate, psf, calibration, n=n_specimen, seed=config.seed,
                                     shape=plan.shape))
    counts = []
    info = {"plan": plan.as_dict(), "specimen_pairs": n_specimen, "steps": steps,
            "recipe_version": RECIPE_VERSION, "calibration": calibration.as_dict()}
    with tempfile.TemporaryDirectory(prefix="lucyd-restore-") as tmp:
        data = Path(tmp)
        for name, raw, gt in pairs:
            rl, rl_info = discrepancy_rl(raw, psf, calibration.noise.read_noise_e)
            counts.append(rl_info["iterations"])
            write_image(data / "raw" / f"{name}.tif", rl)
            write_image(data / "gt" / f"{name}.tif", gt)
        train(_network_config(ndim, steps, config, plan.shape), data, folder / "model", overwrite=True)
    info["training_rl_iterations"] = counts
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "restore.json") as tmp_json:
        tmp_json.write_text(json.dumps(info, indent=2))
    return info


def _complete_model(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a model whose training finished (a cut-short one is retrained)."""
    try:
        info = json.loads((model_dir / "model.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("training", {}).get("status") == "complete"


def _override(calibration: Calibration, config: RestoreConfig) -> Calibration:

    noise = calibration.noise
    if config.photons is not None:
        noise = replace(noise, peak_e=float(config.photons))
    frac = calibration.foreground_fraction if config.density is None else float(config.density)
    return Calibration(noise=noise, foreground_fraction=frac)


def _find_zoo(psf: np.ndarray, calibration: Calibration, config: RestoreConfig, record: dict):
    """The zoo model that fits (:func:`lucyd.restore.zoo.match_zoo`), or None; the record says why.

    ``method="zoo"`` with no fitting model is refused with every model's reasons.
    """
    if config.method not in ("auto", "zoo"):
        return None

    matches = match_zoo(psf, calibration, zoo_dir=config.zoo_dir)
    fit = next((m for m in matches if m.fits), None)
    record["zoo"] = {"matches": [m.as_dict() for m in matches], "used": None}
    desc = json.loads((fit.folder / "zoo.json").read_text()) if fit is not None else {}
    if fit is not None and config.method == "auto":
        if not desc.get("use_in_auto", True):
            reason = desc.get("use_in_auto_reason") or (
                "on its validation pairs it did not beat Richardson–Lucy "
                f"(mean {desc.get('validation_mean_gain_db')} dB)")
            record["zoo"]["why"] = (f"{fit.name} fits the optics but is not used by method=auto: {reason}; a model "
                                    "is trained for this image instead")
            return None
    record["zoo"]["used"] = fit.name if fit else None
    if fit is None:
        why = "; ".join(f"{m.name}: " + ", ".join(m.reasons) for m in matches) or "no zoo model is installed"
        if config.method == "zoo":
            raise InputError(f"method zoo: no zoo model fits this image ({why})")
        record["zoo"]["why"] = f"no zoo model fits ({why}); a model is trained for this image"
    else:
        record["zoo"]["why"] = (f"{fit.name}: PSF in canonical units within {fit.psf_distance:.3f} of its training "
                                f"family (tolerance {desc['psf_tolerance']:g}), noise and sampling in its "
                                "training ranges")
        record["zoo"]["retrain_command"] = desc.get("retrain_command")
    return fit


def _trained_network(p, model_cal, shape, cfg, rl, record, progress, cluster=None, max_memory=None) -> np.ndarray:
    """Train (or reuse from the cache) the refining network for ``model_cal`` and apply it to ``rl``."""
    key = model_key(p, model_cal, cfg)
    folder = cache_root(cfg.cache_dir) / key
    if (folder / "restore.json").is_file() and _complete_model(folder / "model"):
        info = json.loads((folder / "restore.json").read_text())
        record["model"] = {"cache": str(folder), "reused": True}
    else:
        t = time.perf_counter()
        info = prepare_restore_model(p, model_cal, shape, cfg, folder, specimen_estimate=rl)
        record["model"] = {"cache": str(folder), "reused": False, "train_seconds": round(time.perf_counter() - t, 1)}
    record["model"].update({k: info.get(k) for k in ("steps", "plan", "specimen_pairs")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an incomplete model is reported in the record instead
        model = load_model(folder / "model")
    record["model"]["complete"] = bool(model.complete)
    return model.predict(rl, device=cfg.device, progress=progress, cluster=cluster, max_memory=max_memory)


def restore(image, psf, *, config: RestoreConfig | None = None, voxel_size=None, psf_voxel_size=None,
            progress: bool = True, model_calibration: Calibration | None = None, cluster=None,
            max_memory=None, **overrides) -> RestoreResult:
    """Restore a raw fluorescence image with a network trained on data calibrated to it.

    Parameters
    ----------
    image : array_like
        Raw 2D (y, x) or 3D (z, y, x) image in camera counts (not background-subtracted).
    psf : array_like
        Its PSF (same dimensionality; resampled when both voxel sizes are given).
    config : RestoreConfig, optional
        Job parameters; keyword ``overrides`` replace single fields.
    voxel_size, psf_voxel_size : sequence of float, optional
        Voxel sizes (µm) of image and PSF.
    progress : bool
        Progress messages and bars.
    model_calibration : Calibration, optional
        Train (or reuse) the model for this calibration instead of the image's own, e.g. the
        first image's, so that one model serves a series (the image's own noise is still used
        for its units and the physics check).
    cluster : None, str or executor
        Where the network's prediction runs, tile by tile (``local:N``, ``tcp://HOST:PORT``,
        ``slurm``; :meth:`lucyd.train.RestorationModel.predict`); the result is the same.
    max_memory : int or str, optional
        Memory of one prediction tile (per worker); sets the tile shape.

    Returns
    -------
    RestoreResult
        The restoration (float32, counts above the dark level, flux of the data), every
        candidate, the physics check's flux maps and the record of every choice.

    Raises
    ------
    InputError
        Non-finite image, bad PSF, an image too small to calibrate.
    """
    cfg = RestoreConfig.build(**{**(config or RestoreConfig()).model_dump(), **overrides})  # overrides validated
    img = as_image(image, name="image")
    p = prepare_psf(psf, ndim=img.ndim, voxel_size=voxel_size, psf_voxel_size=psf_voxel_size).psf
    t0 = time.perf_counter()
    calibration = _override(calibrate(img, p), cfg)
    noise = calibration.noise
    raw_e = noise.to_electrons(img)
    record: dict = {"config": cfg.model_dump(mode="json"), "calibration": calibration.as_dict(),
                    "image_shape": list(img.shape), "voxel_size": None if voxel_size is None else list(voxel_size)}
    model_cal = model_calibration or calibration
    zoo_fit = _find_zoo(p, calibration, cfg, record)  # before any long computation: method=zoo may refuse
    rl, rl_info = discrepancy_rl(raw_e, p, noise.read_noise_e, progress=progress)
    record["rl"] = {**rl_info, "rule": "discrepancy principle: first iteration with voxel χ² ≤ 1"}
    candidates = {"rl": rl}
    fidelity = {"rl": data_fidelity(rl, raw_e, p, read_noise_e=noise.read_noise_e)}
    model_warning = None
    if fidelity["rl"].chi2 > MODEL_MISMATCH_CHI2:
        model_warning = (
            f"even Richardson–Lucy leaves residuals {fidelity['rl'].chi2:.3g}× the estimated noise variance: the "
            "PSF or the noise estimate does not describe this image (measured PSF from other optics, processed "
            "or resampled data?); no restoration can be checked against it")
    verdicts: dict = {}

    def add_candidate(name: str, estimate: np.ndarray) -> bool:
        """Flux-calibrate ``estimate``, check it against RL; True when it explains the data as well."""
        scale, offset = calibrate_flux(estimate, raw_e, p)
        record.setdefault("flux_calibration", {})[name] = {
            "scale": scale, "background_e": offset,
            "note": "network output a·x + b fitted so that its blur explains the data"}
        candidates[name] = (estimate * np.float32(scale) + np.float32(offset)).astype(np.float32)
        if cfg.data_consistency:
            candidates[f"{name}_raw"] = candidates[name]
            candidates[name], info = data_consistent_rl(candidates[name], raw_e, p, noise.read_noise_e)
            record.setdefault("data_consistency", {})[name] = {
                **info, "rule": "Richardson–Lucy from the network's output, stopped by the discrepancy principle "
                                "(at least one iteration, at most 5)"}
        fidelity[name] = data_fidelity(candidates[name], raw_e, p, read_noise_e=noise.read_noise_e)
        worse, why = compare_fidelity(fidelity[name], fidelity["rl"], tolerance=cfg.tolerance)
        verdicts[name] = (worse, why)
        return not worse

    chosen, why = "rl", "method=rl"
    if zoo_fit is not None:

        model = load_zoo_model(zoo_fit.folder)
        passed = add_candidate("zoo", zoo_refine(rl, p, model, device=cfg.device, progress=progress))
        if cfg.method == "zoo":
            chosen, why = "zoo", f"method=zoo (zoo model {zoo_fit.name})"
        elif passed:
            chosen, why = "zoo", f"the zoo model {zoo_fit.name} fits the optics and passed the physics check"
        else:
            record["zoo"]["rejected"] = verdicts["zoo"][1]
    if cfg.method == "network" or (cfg.method == "auto" and chosen == "rl"):
        net = _trained_network(p, model_cal, img.shape, cfg, rl, record, progress, cluster, max_memory)
        passed = add_candidate("network", net)
        if cfg.method == "network":
            chosen, why = "network", "method=network"
        elif passed:
            chosen, why = "network", "the network trained for this image passed the physics check"
    if chosen == "rl" and cfg.method == "auto":
        why = "the physics check found every network explains the data worse than Richardson–Lucy"
    record["physics_check"] = {name: f.as_dict() for name, f in fidelity.items()}
    if model_warning:
        record["physics_check"]["model_warning"] = model_warning
    for name, (worse, text) in verdicts.items():
        record["physics_check"][f"{name}_worse_than_rl"] = worse
        record["physics_check"].setdefault("verdicts", {})[name] = (
            ("" if not worse else "warning, ") + f"the {name}: " + text)
    if verdicts:  # the chosen network's verdict, else the last network's
        record["physics_check"]["verdict"] = record["physics_check"]["verdicts"][
            chosen if chosen in verdicts else list(verdicts)[-1]]
    record["chosen"] = chosen
    record["why"] = why
    record["seconds"] = round(time.perf_counter() - t0, 1)
    out = {k: noise.to_counts(v) for k, v in candidates.items()}
    return RestoreResult(image=out[chosen], record=record, candidates=out,
                         flux_maps={k: f.flux_map for k, f in fidelity.items()}, model_calibration=model_cal)
