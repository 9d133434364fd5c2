"""The generic trainer: any registered network, one model folder per run.

:func:`train` builds the network named in a :class:`~lucyd.train.config.TrainConfig`, samples
patches from ``raw/`` + ``gt/`` pairs, optimises with Adam and the network's schedule
(RLN: ``0.015 · 0.95^(step/600)``, Li et al., Nature Methods 2022), validates on held-out
images the way a test image is scored (:mod:`lucyd.train.validation`) and writes the model
folder (see :mod:`lucyd.train.model`):

``config.json``, ``model.json`` (the :class:`~lucyd.train.card.ModelCard`, kept current at every
checkpoint), ``best.pt``, ``last.pt``, ``log.jsonl``, ``loss.png``.

Checkpoints (:mod:`lucyd.train.checkpoint`) are atomic; ``train(..., resume=True)`` gives the
same weights as an uninterrupted run. Batch-norm statistics are re-estimated before every
validation and checkpoint (:mod:`lucyd.train.batchnorm`).

Ensembles (``--ensemble K``, :mod:`lucyd.train.ensemble`): K complete model folders ``member_00``
… under one folder with an ``ensemble.json``, each trained by :func:`train` with its own seed and
loadable with :func:`lucyd.train.load_model` on its own.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

import lucyd
from lucyd.device import resolve_device
from lucyd.errors import FileFormatError, InputError, LucydError
from lucyd.nets import build_network, count_parameters, get_spec
from lucyd.progress import progress
from lucyd.train.batchnorm import batch_norm_layers, recalibrate_batch_norm
from lucyd.train.card import ModelCard
from lucyd.train.checkpoint import (
    CHECKPOINT_VERSION,
    CRITERION,
    atomic_torch_save,
    check_checkpoint_matches,
    check_resume_config,
    load_checkpoint,
    rng_states,
    set_rng_states,
)
from lucyd.train.config import TrainConfig
from lucyd.train.data import (
    PatchSampler,
    TrainImage,
    as_planes,
    check_patch,
    load_training_pairs,
    prepare_images,
    split_validation,
    target_scale_ratio,
)
from lucyd.train.log import TrainingLog, plot_losses
from lucyd.train.losses import check_loss_patch, get_loss
from lucyd.train.model import receptive_radius
from lucyd.train.validation import Validator, validation_crops

__all__ = ["train", "recalibrate_batch_norm", "batch_norm_layers"]

#: files of a model folder that a fresh run replaces
_RUN_FILES = ("best.pt", "last.pt", "log.jsonl", "loss.png", "model.json")


def _lr_lambda(cfg: TrainConfig):
    if cfg.schedule == "exp":
        decay, every = float(cfg.lr_decay), float(cfg.lr_decay_steps)
        return lambda step: decay ** (step / every)
    if cfg.schedule == "quarter":
        quarter = max(1, cfg.steps // 4)
        decay = float(cfg.lr_decay)
        return lambda step: decay ** min(3, step // quarter)
    return lambda step: 1.0


def _make_scheduler(cfg: TrainConfig, optimizer):
    if cfg.schedule == "plateau":  # on the validation PSNR (higher is better)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=float(cfg.lr_decay), patience=int(cfg.lr_decay_steps)
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))


def _dataset_json(data_dir: Path) -> dict | None:

    path = data_dir / "dataset.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _never_checkpointed(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a run killed before its first checkpoint (safe to restart)."""
    if (model_dir / "last.pt").exists() or (model_dir / "best.pt").exists():
        return False
    try:
        return ModelCard.read(model_dir).training.status == "running"
    except LucydError:
        return False


def _start_or_resume(config: TrainConfig, model_dir: Path, resume: bool, overwrite: bool):
    """The checkpoint to continue from (None for a fresh run) and the configuration to use."""
    last_path = model_dir / "last.pt"
    if resume:
        if not last_path.is_file():
            raise FileFormatError(f"{model_dir}: nothing to resume (no last.pt)")
        checkpoint = load_checkpoint(last_path)
        return checkpoint, check_resume_config(TrainConfig.load(model_dir / "config.json"), config)
    if (model_dir / "model.json").exists() or last_path.exists():
        if not overwrite and not _never_checkpointed(model_dir):
            raise InputError(
                f"{model_dir}: already holds a model; use resume to continue it, "
                "overwrite to replace it, or another folder"
            )
        for name in _RUN_FILES:
            (model_dir / name).unlink(missing_ok=True)
    return None, config


def _model_card(cfg: TrainConfig, net, images: list[TrainImage], data_dir: Path, split: dict) -> ModelCard:

    spec = get_spec(cfg.model)
    ndim = int(cfg.ndim)
    return ModelCard.model_validate(
        {
            "lucyd_version": lucyd.__version__,
            "network": {
                "name": cfg.model,
                "ndim": ndim,
                "kwargs": dict(cfg.net_kwargs),
                "size_multiple": int(getattr(net, "size_multiple", spec.size_multiple)),
                "parameters": count_parameters(net),
                "receptive_radius": list(receptive_radius(net, ndim)),
                "spec": {"recipe": dict(spec.recipe), "reference": spec.reference},
            },
            "normalization": {
                "method": "percentile",
                "percentiles": list(cfg.norm_percentiles),
                "clip_gt": cfg.clip_gt,
                "prediction": "input normalised with its own global percentiles; output mapped "
                "back as out * (p_hi - p_lo) * target_scale_ratio + p_lo (input units, the "
                "training targets' flux)",
                "training_images": [
                    {"name": im.name, "raw": list(im.raw_range), "gt": list(im.gt_range)}
                    for im in images
                ],
                "target_scale_ratio": target_scale_ratio(
                    (im.raw_range, im.gt_range) for im in images
                ),
            },
            "voxel_size": (
                list(images[0].voxel_size[-ndim:]) if images[0].voxel_size else None
            ),
            "provenance": {
                "data_dir": str(data_dir.resolve()),
                "dataset": _dataset_json(data_dir),
                "images": [im.name for im in images],
                "split": split,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "training": {"status": "running", "steps_done": 0, "steps_planned": cfg.steps},
        }
    )


class _Run:
    """The state of one training run: network, optimiser, samplers, step and best score."""

    def __init__(self, cfg: TrainConfig, train_imgs, val_imgs, multiple: int, model_dir: Path):

        self.cfg, self.model_dir = cfg, model_dir
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.net = build_network(cfg.model, ndim=cfg.ndim, **cfg.net_kwargs).to(self.device)
        self.multiple = int(getattr(self.net, "size_multiple", multiple))  # may depend on kwargs
        check_patch(train_imgs + val_imgs, cfg.patch, self.multiple)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.scheduler = _make_scheduler(cfg, self.optimizer)
        self.loss_fn = get_loss(cfg.loss)
        self.sampler = self._sampler(train_imgs, 2)
        self.val_crops = validation_crops(val_imgs, cfg.patch, cfg.val_patches, self.multiple)
        # precise BN: a sampler of its own, rewound before every recalibration (the same batches
        # each time, independent of the training sampler's random state, so resume stays exact)
        self.recal_sampler, self.recal_state = None, None
        if cfg.bn_recalibration > 0 and batch_norm_layers(self.net):
            self.recal_sampler = self._sampler(train_imgs, 4)
            self.recal_state = self.recal_sampler.state
        self.step, self.best_val, self.since_best, self.best_record = 0, math.inf, 0, {}
        self.saved_step = 0

    def _sampler(self, imgs, stream: int) -> PatchSampler:
        cfg = self.cfg
        return PatchSampler(
            imgs,
            cfg.patch,
            rejection=cfg.patch_rejection,
            threshold=cfg.rejection_threshold,
            augment=cfg.augment,
            same_image=cfg.same_image_batch,
            seed=np.random.default_rng([cfg.seed, stream]),
        )

    def restore(self, checkpoint: dict, last_path: Path) -> None:
        check_checkpoint_matches(checkpoint, self.cfg, last_path)
        self.net.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.step = self.saved_step = int(checkpoint["step"])
        if checkpoint.get("criterion") == CRITERION:  # older runs kept a loss: re-select
            self.best_val = float(checkpoint["best_val"])
            self.since_best = int(checkpoint["since_best"])
            self.best_record = dict(checkpoint.get("best_record") or {})
        set_rng_states(checkpoint["rng"], self.sampler)

    def train_step(self) -> float:
        xb, yb = self.sampler.sample(self.cfg.batch)
        x = torch.from_numpy(xb).to(self.device)
        y = torch.from_numpy(yb).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss_fn(self.net, x, y)
        if not torch.isfinite(loss):
            raise LucydError(
                f"training diverged at step {self.step}: the loss is {float(loss)}; "
                "lower the learning rate (--lr)"
            )
        loss.backward()
        self.optimizer.step()
        self.step += 1
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        return float(loss.detach())

    def recalibrate(self) -> None:
        """Eval-mode batch-norm statistics of the current weights (before validation, saving)."""
        if self.recal_sampler is None:
            return
        self.recal_sampler.state = self.recal_state
        batches = (
            self.recal_sampler.sample(self.cfg.batch)[0] for _ in range(self.cfg.bn_recalibration)
        )
        recalibrate_batch_norm(self.net, batches, self.device)

    def _header(self) -> dict:
        return {
            "checkpoint_version": CHECKPOINT_VERSION,
            "model_name": self.cfg.model,
            "ndim": self.cfg.ndim,
            "net_kwargs": dict(self.cfg.net_kwargs),
            "step": self.step,
            "model": self.net.state_dict(),
        }

    def save_last(self) -> None:
        atomic_torch_save(
            {
                **self._header(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "criterion": CRITERION,
                "best_val": self.best_val,
                "since_best": self.since_best,
                "best_record": self.best_record,
                "rng": rng_states(self.sampler),
            },
            self.model_dir / "last.pt",
        )
        self.saved_step = self.step

    def save_best(self, record: dict) -> None:
        atomic_torch_save({**self._header(), "metrics": record}, self.model_dir / "best.pt")

    def checkpoint(self, validator: Validator | None, log: TrainingLog) -> None:
        """Validate (choosing ``best.pt`` on the validation PSNR) and save ``last.pt``."""
        self.recalibrate()
        record = {"step": self.step}
        if validator is not None:
            record.update(validator(self.net))
        psnr = record.get("val_psnr")
        if psnr is not None:
            log.write({"kind": "val", **record})
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(psnr)
            if -psnr < self.best_val - self.cfg.min_delta:
                self.best_val, self.since_best = -psnr, 0
                self.best_record = {
                    "best_step": self.step,
                    "best_val_psnr": psnr,
                    "best_val_ssim": record.get("val_ssim"),
                }
                self.save_best(record)
            else:
                self.since_best += 1
        else:  # no validation data: the latest weights are the best known
            self.best_record = {"best_step": self.step}
            self.save_best(record)
        self.save_last()


def _write_card(card: ModelCard, model_dir: Path, run: _Run, status: str, reason=None, t=None):
    fields = {
        "status": status,
        "stop_reason": reason,
        "steps_done": run.saved_step,
        "steps_planned": run.cfg.steps,
        "train_time_s": None if t is None else round(t, 2),
        **run.best_record,
    }
    card.training = card.training.model_validate(fields)
    card.write(model_dir / "model.json")


def train(
    config: TrainConfig,
    data_dir: str | Path,
    model_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train a registered network on ``raw/`` + ``gt/`` pairs and write its model folder.

    Parameters
    ----------
    config : TrainConfig
        The job (network name, patch, batch, steps, schedule, loss, ...). ``None`` fields take
        the network's published recipe (its :class:`~lucyd.nets.NetworkSpec`; RLN: Li et al.,
        Nature Methods 2022 — Adam, ``lr 0.015 · 0.95^(step/600)``, batch 4, RLN loss,
        percentiles 0.01/99.5, mean-based background rejection, no flips).
    data_dir : str or Path
        Folder with ``raw/`` and ``gt/`` (same file names), e.g. from ``lucyd synth``.
    model_dir : str or Path
        Output model folder (created). A folder whose training was killed before its first
        checkpoint is started again without ``overwrite``.
    resume : bool
        Continue from ``model_dir/last.pt``: same data, same configuration (``steps``,
        ``patience``, ``device``, ``val_interval``, ``time_limit_s``, ``threads`` may change).
        The result is identical to an uninterrupted run.
    overwrite : bool
        Replace an existing model folder's run instead of refusing.

    Returns
    -------
    Path
        ``model_dir``. Its ``model.json`` says ``complete`` when the run did its steps (or
        stopped early), ``interrupted`` after a time limit, Ctrl-C or an error (the card then
        describes the last checkpoint; resume continues it).

    Raises
    ------
    InputError
        Bad configuration (unknown network or loss, patch larger than the data or not a
        multiple of the network's size multiple), existing model folder without ``resume`` /
        ``overwrite``, mismatching configuration on resume.
    FileFormatError
        Missing or unreadable data folder, missing checkpoint on resume.
    LucydError
        The loss became NaN or infinite (diverged).
    """

    data_dir, model_dir = Path(data_dir), Path(model_dir)
    if not isinstance(config, TrainConfig):
        raise InputError("config: expected a TrainConfig")
    spec = get_spec(config.model)  # unknown network: clear error before loading data
    get_loss(config.loss or config.defaults()["loss"])
    checkpoint, config = _start_or_resume(config, model_dir, resume, overwrite)

    pairs = load_training_pairs(data_dir)
    data_ndim = pairs[0].raw.ndim
    # a 2D model on volumes trains on their planes (config.ndim 2, 3D data)
    ndim = 2 if (config.ndim == 2 and data_ndim == 3) else data_ndim
    if ndim not in spec.ndims:
        raise InputError(
            f"model {spec.name!r}: supports {spec.ndims}D data, the data are {ndim}D"
            + ("; train on the planes with ndim 2 (--ndim 2)" if 2 in spec.ndims else "")
        )
    min_shape = tuple(int(min(p.raw.shape[a] for p in pairs)) for a in range(data_ndim))
    min_shape = min_shape[data_ndim - ndim :]
    cfg = config.resolved(ndim, min_shape) if checkpoint is None else config
    get_loss(cfg.loss)
    check_loss_patch(cfg.loss, cfg.patch)
    images = prepare_images(
        pairs, *cfg.norm_percentiles, clip_gt=cfg.clip_gt, target_scale=cfg.target_scale,
        target_norm=cfg.target_norm
    )
    del pairs
    if ndim == data_ndim:
        check_patch(images, cfg.patch, spec.size_multiple)
    split_patch = cfg.patch if ndim == data_ndim else (1, *cfg.patch)
    train_imgs, val_imgs, split_info = split_validation(
        images, cfg.val_fraction, split_patch, cfg.seed
    )
    if ndim < data_ndim:
        train_imgs, val_imgs = as_planes(train_imgs), as_planes(val_imgs)
    run = _Run(cfg, train_imgs, val_imgs, spec.size_multiple, model_dir)
    if checkpoint is not None:
        run.restore(checkpoint, model_dir / "last.pt")

    model_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(model_dir / "config.json")
    card = _model_card(cfg, run.net, images, data_dir, split_info)  # images: whole pairs
    validator = Validator(run.val_crops, card, run.device) if run.val_crops else None
    _write_card(card, model_dir, run, "running")
    log = TrainingLog(model_dir / "log.jsonl", keep_until=run.step if checkpoint is not None else -1)

    run.net.train()
    t0 = time.perf_counter()
    interval_losses: list[float] = []
    status, reason = "complete", "steps"
    bar = progress(total=cfg.steps, desc=f"train {cfg.model}", initial=run.step)
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    log_every = max(1, min(cfg.val_interval, 10))
    try:
        while run.step < cfg.steps:
            interval_losses.append(run.train_step())
            bar.update(1)
            bar.set_postfix(loss=f"{interval_losses[-1]:.4f}")
            if run.step % log_every == 0 or run.step == cfg.steps:
                log.write(
                    {
                        "kind": "train",
                        "step": run.step,
                        "loss": float(np.mean(interval_losses)),
                        "lr": run.optimizer.param_groups[0]["lr"],
                        "time_s": round(time.perf_counter() - t0, 3),
                    }
                )
                interval_losses = []
            out_of_time = (
                cfg.time_limit_s is not None and time.perf_counter() - t0 >= cfg.time_limit_s
            )
            if run.step % cfg.val_interval == 0 or run.step == cfg.steps or out_of_time:
                run.checkpoint(validator, log)
                _write_card(card, model_dir, run, "running", t=time.perf_counter() - t0)
                plot_losses(log.path, model_dir / "loss.png")
                if cfg.patience is not None and run.since_best >= cfg.patience:
                    reason = "early-stopped"
                    break
                if out_of_time and run.step < cfg.steps:
                    status, reason = "interrupted", "time-limit"
                    break
    except BaseException as exc:  # Ctrl-C, divergence, any error: say so in the card
        status, reason = "interrupted", type(exc).__name__
        raise
    finally:
        bar.close()
        torch.set_num_threads(threads_before)
        if run.saved_step > 0 or status == "complete":
            _write_card(card, model_dir, run, status, reason, time.perf_counter() - t0)
    return model_dir

