"""The pretrained physics zoo of ``lucyd restore``: refining networks that need no training.

Each zoo model refines the discrepancy-principle Richardson–Lucy estimate
(:func:`lucyd.restore.physics_steps.discrepancy_rl`) *in canonical optical units*
(:mod:`lucyd.restore.canonical`: the PSF's FWHM spans 3 pixels per axis), so one model serves
every microscope whose PSF has, on that grid, the shape of its training family:

* ``widefield-3d`` / ``widefield-2d``: scalar Born–Wolf widefield PSFs (exact and paraxial
  defocus; NA 0.8–1.49, emission 0.45–0.67 µm; air, water, silicone and oil immersion; 2D:
  the in-focus plane) and Gaussian PSFs (the usual approximation), sampled at 2–5.5 native
  pixels per lateral FWHM and 2–6 per axial FWHM.
* ``confocal-3d``: point-scanning confocal PSFs of :func:`lucyd.psf.models.confocal`
  (excitation Born–Wolf PSF × emission PSF convolved with the pinhole; Wilson & Sheppard 1984)
  with the widefield NA, emission and immersion ranges, excitation 20–50 nm below the
  emission (the Stokes shift of the usual dyes), pinhole 0.5–1.5 Airy units.
* ``lightsheet-3d``: light-sheet PSFs, the widefield detection PSF of a moderate-NA objective
  (NA 0.3–1.1; air, water, or a clearing medium of index 1.52) multiplied along the detection
  axis z by the Gaussian intensity profile of the sheet, 1–6 µm FWHM. The system PSF of a
  light-sheet microscope is the product of the illumination profile and the detection PSF,
  and a sheet thinner than the detection depth of field bounds the axial extent (Huisken
  et al., *Science* 305:1007, 2004; Engelbrecht & Stelzer, *Opt. Lett.* 31:1477, 2006). A
  Gaussian sheet's thickness trades against its usable field of view; 1–6 µm spans the usual
  settings of Gaussian-beam light-sheet microscopes.

The new families have no Gaussian members (``gaussian_share`` 0): a Gaussian PSF is served by
``widefield-3d``, and each family stays the physics of its microscope, so :func:`match_zoo`
can tell them apart.

The training pairs (:func:`zoo_pairs`) are made as a user's image is restored: a phantom
(mixed, nuclei, granules or tubules at a random density, in three of four pairs on a smooth
diffuse component: real dense specimens are not dark between their structures, and a model
trained without it erases their diffuse signal) is imaged on a native grid through a
random PSF of the family with Poisson–Gaussian camera noise over a range of photon levels
(the calibration of :mod:`lucyd.restore.calibration` in reverse), restored by
discrepancy-principle RL on that grid, and the estimate and the object are resampled to
canonical units. The network learns to undo what imaging + RL + resampling do, whatever the
optics.

A model *fits* an image (:func:`match_zoo`) when its dimensionality matches, the PSF's native
FWHM lies in the model's sampling range, the PSF in canonical units is within
:data:`PSF_TOLERANCE` (relative L2) of one of the family's PSFs, and the estimated photon
level and read noise lie in the training ranges. Otherwise the refusal says which condition
failed, and ``lucyd restore`` trains a model for the image instead.

Every model folder under :data:`ZOO_DIR` holds the network (``model/``: ``config.json``,
``model.json`` — the model card —, ``best.pt``), ``zoo.json`` (family, ranges, tolerance, the
exact retraining command, the validation table) and ``family.npz`` (the family's canonical
PSFs). Retrain one with ``OMP_NUM_THREADS=1 python -m lucyd.restore.zoo build NAME --work DIR``
(it checkpoints; the same command resumes a killed run with an identical result).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lucyd.errors import FileFormatError, InputError
from lucyd.forward.noise_estimate import NoiseModel
from lucyd.io import write_image
from lucyd.io.atomic import atomic_path
from lucyd.metrics import evaluate
from lucyd.metrics.fidelity import calibrate_flux
from lucyd.restore.calibration import Calibration, image_phantom
from lucyd.restore.canonical import (
    CANONICAL_FWHM_PX,
    canonical_psf,
    canonical_zoom,
    psf_distance,
    psf_fwhm_px,
    resample,
)
from lucyd.restore.physics_steps import discrepancy_rl
from lucyd.restore.zoo_optics import EMISSION_UM, OPTICS_MEDIA, family_psf, log_uniform, sample_optics
from lucyd.train import TrainConfig, load_model, train

#: folder of the shipped zoo models (package data)
ZOO_DIR = Path(__file__).parent / "models"
#: largest relative L2 distance between an image's canonical PSF and the nearest PSF of a
#: model's training family for the model to be used: 3× the largest nearest-neighbour distance
#: within the 48 reference PSFs of a family (0.03 in 2D, 0.05 in 3D). For scale (measured with
#: :func:`lucyd.restore.canonical.psf_distance`): a 3D Gaussian and a 3D widefield PSF differ
#: by 0.64, a two-lobed PSF from a Gaussian by 0.54, the measured bead PSF of
#: ``widefield_bead`` from the 3D family by 0.36; in focus, an Airy pattern and a Gaussian
#: differ by only 0.07 (both are in the family).
PSF_TOLERANCE = 0.15
#: margin on the noise and sampling ranges of training (a factor on either end)
RANGE_MARGIN = 1.15
#: phantom units of the structures' bright level (the phantoms' 99.9th percentile is 600–800)
DIFFUSE_AMPLITUDE = 600.0
#: kinds of phantom and their share of a zoo training set
ZOO_KINDS = ("mixed", "nuclei", "granules", "tubules")


@dataclass(frozen=True)
class ZooSpec:
    """How one zoo model is made: the training family, the noise ranges, the network and budget."""

    name: str
    ndim: int
    #: canonical shape of one training pair (z, y, x) / (y, x)
    canonical_shape: tuple[int, ...]
    n_pairs: int
    steps: int
    patch: tuple[int, ...]
    first_filters: int = 16
    depth: int = 2
    batch: int = 4
    #: share of Gaussian PSFs (the rest Born–Wolf widefield)
    gaussian_share: float = 0.35
    #: native pixels per lateral / axial FWHM
    lateral_fwhm_px: tuple[float, float] = (2.0, 5.5)
    axial_fwhm_px: tuple[float, float] = (2.0, 6.0)
    #: bright level (99.9th percentile of the smoothed image) in photo-electrons above dark
    peak_e: tuple[float, float] = (20.0, 3000.0)
    read_noise_e: tuple[float, float] = (0.3, 6.0)
    background_e: tuple[float, float] = (0.2, 30.0)
    #: phantom density factors (log-uniform)
    density: tuple[float, float] = (0.1, 4.0)
    #: share of objects with a smooth diffuse component (its amplitude 5–100 % of the structures')
    diffuse_share: float = 0.75
    n_validation: int = 8
    seed: int = 0
    #: optics family of the physical PSFs: "widefield", "confocal" or "lightsheet"
    optics: str = "widefield"
    #: confocal pinhole diameter (Airy units)
    pinhole_au: tuple[float, float] = (0.5, 1.5)
    #: light-sheet thickness (FWHM of the Gaussian intensity profile, µm; log-uniform)
    sheet_fwhm_um: tuple[float, float] = (1.0, 6.0)

    def retrain_command(self) -> str:
        return f"OMP_NUM_THREADS=1 python -m lucyd.restore.zoo build {self.name} --work /tmp/lucyd-zoo-{self.name}"


ZOO_SPECS = {
    "widefield-2d": ZooSpec(name="widefield-2d", ndim=2, canonical_shape=(128, 128), n_pairs=256, steps=10_000,
                            patch=(64, 64), n_validation=16),
    "widefield-3d": ZooSpec(name="widefield-3d", ndim=3, canonical_shape=(24, 64, 64), n_pairs=128, steps=10_000,
                            patch=(12, 32, 32), first_filters=8, batch=2, n_validation=8),
    "confocal-3d": ZooSpec(name="confocal-3d", ndim=3, canonical_shape=(24, 64, 64), n_pairs=128, steps=10_000,
                           patch=(12, 32, 32), first_filters=8, batch=2, n_validation=8, optics="confocal",
                           gaussian_share=0.0),
    "lightsheet-3d": ZooSpec(name="lightsheet-3d", ndim=3, canonical_shape=(24, 64, 64), n_pairs=128,
                             steps=10_000, patch=(12, 32, 32), first_filters=8, batch=2, n_validation=8,
                             optics="lightsheet", gaussian_share=0.0),
}


def _calibration(peak_e: float, read_noise_e: float, background_e: float, foreground: float):
    noise = NoiseModel(dark_level=0.0, gain=1.0, read_noise_e=read_noise_e, background_e=background_e,
                       peak_e=peak_e, slope_r2=1.0, shot_noise_limited=True)
    return Calibration(noise=noise, foreground_fraction=foreground)


def zoo_pairs(spec: ZooSpec, *, n: int, seed: int):
    """Yield ``(name, native, canonical)`` for ``n`` synthetic pairs of ``spec``'s family.

    ``native`` is ``{"raw", "gt", "rl", "psf"}`` on the native grid (photo-electrons above dark;
    ``rl`` the discrepancy-principle estimate); ``canonical`` is ``(rl_c, gt_c, zoom)``, both
    resampled to canonical units. Each pair draws a PSF (:func:`sample_optics`), a phantom kind
    and density, a bright level, read noise and background from the spec's ranges, and is
    imaged by :func:`lucyd.restore.calibration.calibrated_pairs` (the same imaging as
    per-specimen training).
    """
    rng = np.random.default_rng(seed)
    for i in range(n):
        optics = sample_optics(rng, spec)
        psf = family_psf(optics, spec.ndim)
        zoom = canonical_zoom(psf)
        native_shape = tuple(max(8, int(round(c / z))) for c, z in zip(spec.canonical_shape, zoom, strict=True))
        kind = ZOO_KINDS[i % len(ZOO_KINDS)]
        cal = _calibration(log_uniform(rng, spec.peak_e), float(rng.uniform(*spec.read_noise_e)),
                           log_uniform(rng, spec.background_e), 0.0)
        perlin = None
        if rng.random() < spec.diffuse_share:  # diffuse signal of dense specimens (cytoplasm, out-of-focus haze)
            perlin = {"amplitude": DIFFUSE_AMPLITUDE * log_uniform(rng, (0.05, 1.0)),
                      "scale": log_uniform(rng, (8.0, 48.0))}
        raw, gt = image_phantom(kind, native_shape, psf, cal.noise, density=log_uniform(rng, spec.density),
                                seed=int(rng.integers(2**31)), perlin=perlin)
        rl, _ = discrepancy_rl(raw, psf, cal.noise.read_noise_e)
        rl_c = resample(rl, shape=spec.canonical_shape)
        gt_c = resample(gt, shape=spec.canonical_shape)
        info = {**optics, "kind": kind, "peak_e": cal.noise.peak_e, "read_noise_e": cal.noise.read_noise_e,
                "background_e": cal.noise.background_e, "native_shape": list(native_shape),
                "diffuse": perlin}
        yield f"{i:04d}_{optics['family']}_{kind}", {"raw": raw, "gt": gt, "rl": rl, "psf": psf, "info": info}, (
            rl_c, gt_c, zoom)


def _train_config(spec: ZooSpec):
    return TrainConfig(
        model="care", net_kwargs={"first_filters": spec.first_filters, "depth": spec.depth, "kernel_size": 3},
        ndim=spec.ndim, patch=spec.patch, batch=spec.batch, steps=spec.steps, lr=1e-3, schedule="exp", lr_decay=0.5,
        lr_decay_steps=max(1, spec.steps // 4), loss="mse", norm_percentiles=(0.0, 99.9), target_scale="input",
        clip_gt=False, augment=True, patch_rejection="none", val_fraction=0.1, val_interval=max(1, spec.steps // 20),
        val_patches=16, threads=1, seed=spec.seed, device="cpu",
    )


def family_set(spec: ZooSpec, n: int = 48, seed: int = 12345) -> np.ndarray:
    """Canonical PSFs of ``n`` members of the family (the reference set of :func:`match_zoo`)."""
    rng = np.random.default_rng(seed)
    members = []
    for i in range(n):
        optics = sample_optics(rng, spec)
        if i < 2:  # both kinds are always represented
            optics = sample_optics(rng, ZooSpec(**{**asdict(spec), "gaussian_share": float(i == 0)}))
        members.append(canonical_psf(family_psf(optics, spec.ndim)))
    return np.stack(members)


def write_family(spec: ZooSpec, folder: str | Path) -> None:
    """Write ``folder/family.npz``: the canonical reference PSFs of ``spec``'s family (:func:`family_set`)."""
    with atomic_path(Path(folder) / "family.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, psfs=family_set(spec))


def make_training_data(spec: ZooSpec, data_dir: Path) -> None:
    """Write ``raw/`` (canonical RL estimates) and ``gt/`` (canonical objects) for ``spec`` into ``data_dir``.

    Skipped when ``data_dir/pairs.json`` exists (a finished set); pairs are deterministic in
    ``spec.seed``.
    """
    if (data_dir / "pairs.json").is_file():
        return
    infos = []
    for name, native, (rl_c, gt_c, _) in zoo_pairs(spec, n=spec.n_pairs, seed=spec.seed):
        write_image(data_dir / "raw" / f"{name}.tif", rl_c)
        write_image(data_dir / "gt" / f"{name}.tif", gt_c)
        infos.append({"name": name, **native["info"]})
        print(f"pair {name}", flush=True)
    with atomic_path(data_dir / "pairs.json") as tmp:
        tmp.write_text(json.dumps(infos, indent=1))


def zoo_refine(rl_e: np.ndarray, psf: np.ndarray, model, *, device: str = "cpu", progress: bool = False) -> np.ndarray:
    """Apply a zoo network to an RL estimate in canonical units and return it on the native grid.

    ``rl_e`` (photo-electrons above dark, native grid) is resampled to canonical units (the
    PSF's FWHM 3 px per axis), refined by ``model`` (a loaded :class:`~lucyd.train.RestorationModel`)
    and resampled back to ``rl_e``'s shape, flux preserved.
    """
    zoom = canonical_zoom(psf)
    rl_c = resample(rl_e, zoom)
    net_c = model.predict(rl_c, device=device, progress=progress)
    return resample(np.clip(net_c, 0, None), shape=rl_e.shape)


def load_zoo_model(folder: str | Path):
    """The network of zoo model ``folder`` (:func:`lucyd.train.load_model` on ``folder/model``)."""
    return load_model(Path(folder) / "model")


def _validate(spec: ZooSpec, model_dir: Path) -> list[dict]:
    """The validation table: zoo vs discrepancy RL on fresh pairs (a seed never trained on), native grid."""
    model = load_model(model_dir)
    rows = []
    for name, nat, _ in zoo_pairs(spec, n=spec.n_validation, seed=spec.seed + 1_000_003):
        net = zoo_refine(nat["rl"], nat["psf"], model)
        a, b = calibrate_flux(net, nat["raw"], nat["psf"])
        net = net * np.float32(a) + np.float32(b)
        info = nat["info"]
        rows.append({"pair": name, "family": info["family"], "kind": info["kind"],
                     "peak_e": round(info["peak_e"], 1), "read_noise_e": round(info["read_noise_e"], 2),
                     "fwhm_px": [round(info["axial_fwhm_px"], 2)] * (spec.ndim == 3) + [
                         round(info["lateral_fwhm_px"], 2)],
                     "raw_psnr": round(evaluate(nat["raw"], nat["gt"])["psnr"], 2),
                     "rl_psnr": round(evaluate(nat["rl"], nat["gt"])["psnr"], 2),
                     "zoo_psnr": round(evaluate(net, nat["gt"])["psnr"], 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def auto_policy(validation: list[dict]) -> dict:
    """Whether ``method="auto"`` may use a model: only when it beat RL on average on its validation pairs.

    Returns ``{"validation_mean_gain_db", "use_in_auto"}`` for ``zoo.json``. A model that does
    not beat the discrepancy-stopped RL on fresh pairs of its own family is not offered by
    ``auto`` (it stays available as ``method="zoo"``); the physics check still judges every
    model that is offered.
    """
    gain = float(np.mean([r["zoo_psnr"] - r["rl_psnr"] for r in validation])) if validation else float("nan")
    return {"validation_mean_gain_db": round(gain, 3), "use_in_auto": bool(gain > 0)}


def build_zoo_model(name: str, work: str | Path, *, out_dir: str | Path | None = None) -> Path:
    """Make the training set, train (or resume) and validate zoo model ``name``; install it into ``out_dir``.

    ``work`` keeps the data and the training run (``data/``, ``run/``): calling again after a
    kill resumes the training from its last checkpoint (identical result). The installed folder
    (default ``ZOO_DIR/name``) gets the network files, ``family.npz`` and ``zoo.json``.
    """
    if name not in ZOO_SPECS:
        raise InputError(f"zoo: unknown model {name!r}; choose one of {', '.join(ZOO_SPECS)}")
    spec = ZOO_SPECS[name]
    work = Path(work)
    out = Path(out_dir) if out_dir is not None else ZOO_DIR / name
    t0 = time.process_time()
    make_training_data(spec, work / "data")
    run = work / "run"
    resume = (run / "last.pt").is_file()
    train(_train_config(spec), work / "data", run, resume=resume, overwrite=not resume)
    validation = _validate(spec, run)
    (out / "model").mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.json", "best.pt"):
        shutil.copy2(run / f, out / "model" / f)
    write_family(spec, out)
    description = {
        "name": spec.name, "ndim": spec.ndim, "canonical_fwhm_px": CANONICAL_FWHM_PX,
        "psf_tolerance": PSF_TOLERANCE, "spec": asdict(spec), "optics": spec.optics,
        "media": {k: list(v[1]) for k, v in OPTICS_MEDIA[spec.optics].items()},
        "emission_um": list(EMISSION_UM), "retrain_command": spec.retrain_command(),
        "build_cpu_s": round(time.process_time() - t0, 1), "validation": validation,
        **auto_policy(validation),
    }
    if (out / "zoo.json").is_file():  # a recorded decision from held-out evidence survives retraining
        previous = read_zoo(out)
        if previous.get("use_in_auto_reason"):
            description.update(use_in_auto=False, use_in_auto_reason=previous["use_in_auto_reason"])
    with atomic_path(out / "zoo.json") as tmp:
        tmp.write_text(json.dumps(description, indent=1))
    return out


@dataclass
class ZooMatch:
    """The result of :func:`match_zoo` for one zoo model."""

    name: str
    folder: Path
    fits: bool
    reasons: list[str] = field(default_factory=list)
    psf_distance: float | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "fits": self.fits, "reasons": self.reasons,
                "psf_distance": None if self.psf_distance is None else round(self.psf_distance, 4)}


def zoo_models(zoo_dir: str | Path | None = None) -> list[Path]:
    """Folders of the installed zoo models (those with a ``zoo.json``)."""
    root = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    return sorted(p.parent for p in root.glob("*/zoo.json"))


def read_zoo(folder: str | Path) -> dict:
    """A zoo model's ``zoo.json``; :class:`FileFormatError` when unreadable."""
    path = Path(folder) / "zoo.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: unreadable zoo description ({exc})") from None


def _within(value: float, lo_hi, margin: float = RANGE_MARGIN) -> bool:
    lo, hi = lo_hi
    return lo / margin <= value <= hi * margin


def match_zoo(psf: np.ndarray, calibration, *, zoo_dir: str | Path | None = None) -> list[ZooMatch]:
    """Check every zoo model against an image's PSF and calibration; the fitting ones first.

    A model fits when (1) its ndim is the PSF's; (2) the PSF's native FWHM per axis lies in the
    model's sampling range (± :data:`RANGE_MARGIN`); (3) the canonical PSF is within
    :data:`PSF_TOLERANCE` of the nearest PSF of the training family; (4) the estimated bright
    level and read noise lie in the training ranges (± :data:`RANGE_MARGIN`). Each refusal
    names every failed condition. Fitting models are sorted by PSF distance.
    """
    p = np.asarray(psf, np.float32)
    widths = psf_fwhm_px(p)
    canon = None
    matches = []
    for folder in zoo_models(zoo_dir):
        desc = read_zoo(folder)
        spec = desc["spec"]
        reasons: list[str] = []
        distance = None
        if desc["ndim"] != p.ndim:
            reasons.append(f"it is a {desc['ndim']}D model, the image is {p.ndim}D")
        else:
            ranges = ([spec["axial_fwhm_px"]] if p.ndim == 3 else []) + [spec["lateral_fwhm_px"]] * 2
            for axis, (w, r) in enumerate(zip(widths, ranges, strict=True)):
                if not _within(w, r):
                    reasons.append(f"the PSF's FWHM along axis {axis} is {w:.2f} px, outside its training "
                                   f"sampling {r[0]:g}–{r[1]:g} px")
            if canon is None:
                canon = canonical_psf(p)
            with np.load(folder / "family.npz") as f:
                family = f["psfs"]
            distance = min(psf_distance(canon, ref) for ref in family)
            if distance > desc["psf_tolerance"]:
                reasons.append(f"the PSF in canonical units differs from its training family by {distance:.2f} "
                               f"(relative L2; tolerance {desc['psf_tolerance']:g})")
            noise = calibration.noise
            if not _within(noise.peak_e, spec["peak_e"]):
                reasons.append(f"the bright level {noise.peak_e:.3g} e⁻ is outside its training range "
                               f"{spec['peak_e'][0]:g}–{spec['peak_e'][1]:g} e⁻")
            if not _within(noise.read_noise_e, spec["read_noise_e"]):
                reasons.append(f"the read noise {noise.read_noise_e:.3g} e⁻ is outside its training range "
                               f"{spec['read_noise_e'][0]:g}–{spec['read_noise_e'][1]:g} e⁻")
        matches.append(ZooMatch(name=desc["name"], folder=folder, fits=not reasons, reasons=reasons,
                                psf_distance=distance))
    matches.sort(key=lambda m: (not m.fits, m.psf_distance if m.psf_distance is not None else np.inf))
    return matches


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lucyd.restore.zoo", description="Build (retrain) a zoo model.")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="make the training set, train (resuming) and install a zoo model")
    b.add_argument("name", choices=sorted(ZOO_SPECS))
    b.add_argument("--work", required=True, help="folder for data and the training run (resumable)")
    b.add_argument("--out", default=None, help="install folder (default: the package's zoo)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    print(build_zoo_model(args.name, args.work, out_dir=args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
