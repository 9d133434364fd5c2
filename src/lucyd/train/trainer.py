"""The generic trainer: any registered network, one model folder per run.

:func:`train` builds the network named in a :class:`~lucyd.train.config.TrainConfig`, samples
patches from ``raw/`` + ``gt/`` pairs, optimises with Adam and the network's schedule
(RLN: ``0.015 · 0.95^(step/600)``, Li et al., Nature Methods 2022), validates on held-out
data (loss, PSNR, SSIM), and writes the model folder (see :mod:`lucyd.train.model`):

``config.json``, ``model.json``, ``best.pt``, ``last.pt``, ``log.jsonl``, ``loss.png``.

Checkpoints are written atomically (temporary file, then rename), so an interrupted run never
corrupts ``best.pt`` or ``last.pt``. ``last.pt`` holds everything needed to continue exactly:
weights, optimiser, scheduler, step, early-stopping state and the RNG states of torch, numpy
(the patch sampler) and Python; ``train(..., resume=True)`` therefore gives the same weights
as an uninterrupted run.

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
from typing import Any

import numpy as np
import torch

import lucyd
from lucyd.device import resolve_device
from lucyd.errors import InputError, LucydError
from lucyd.io.atomic import atomic_path
from lucyd.progress import progress
from lucyd.train.config import TrainConfig
from lucyd.train.data import (
    PatchSampler,
    check_patch,
    load_training_pairs,
    prepare_images,
    split_validation,
)
from lucyd.train.losses import check_loss_patch, get_loss
from lucyd.train.model import FORMAT_VERSION, MODEL_FORMAT, receptive_radius

#: version of the checkpoint dictionaries in best.pt / last.pt
CHECKPOINT_VERSION = 1


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set, np.ndarray)):
        return list(value)
    return str(value)


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
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=float(cfg.lr_decay), patience=int(cfg.lr_decay_steps)
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


def _metrics(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float | None]:
    """PSNR and SSIM (data range 1, normalised target) of one validation patch."""
    from lucyd.metrics import psnr, ssim

    p = psnr(pred, gt, data_range=1.0)
    try:
        s = ssim(pred, gt, data_range=1.0)
    except LucydError:
        s = None
    return p, s


def batch_norm_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The batch-norm layers of ``net`` that keep running statistics."""
    return [
        m
        for m in net.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recalibrate_batch_norm(net: torch.nn.Module, batches, device=None) -> int:
    """Re-estimate the running statistics of every batch-norm layer of ``net`` ("precise BN").

    The running mean and variance are reset and replaced by the exact average of the batch
    statistics of ``batches`` (inputs shaped like training batches), forwarded in train mode
    without gradients (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021). The moving
    averages kept during training (momentum 0.01 in Keras' convention for RLN) lag behind
    weights that change quickly and are dominated by a handful of small, noisy batches, so
    that eval-mode predictions of a short training can be far worse than train-mode ones.
    Weights, gradients and random states are untouched; the layers' momenta and the
    network's train/eval mode are restored.

    Parameters
    ----------
    net : nn.Module
        Any network; without batch-norm layers nothing happens.
    batches : iterable of array or Tensor
        Input batches (B, C, *spatial).
    device : torch device, optional
        Where to send the batches (default: the network's).

    Returns
    -------
    int
        The number of batches forwarded (0 when ``net`` has no batch norm).
    """
    layers = batch_norm_layers(net)
    if not layers:
        return 0
    if device is None:
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    momenta = [m.momentum for m in layers]
    was_training = net.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    n = 0
    try:
        for xb in batches:
            x = torch.as_tensor(np.ascontiguousarray(xb) if isinstance(xb, np.ndarray) else xb)
            net(x.to(device))
            n += 1
    finally:
        for m, mom in zip(layers, momenta, strict=True):
            m.momentum = mom
        net.train(was_training)
    return n


def _rng_states(sampler: PatchSampler) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": sampler.state,
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(states: dict, sampler: PatchSampler) -> None:
    torch.set_rng_state(states["torch"])
    sampler.state = states["numpy"]
    random.setstate(_as_tuple(states["python"]))
    if torch.cuda.is_available() and states.get("cuda"):
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuple(value):
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def _plot_losses(log_path: Path, png_path: Path) -> None:
    """Training and validation loss against step, from ``log.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses, vsteps, vlosses = [], [], [], []
    for line in log_path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            steps.append(rec["step"])
            losses.append(rec["loss"])
        elif rec.get("kind") == "val":
            vsteps.append(rec["step"])
            vlosses.append(rec["val_loss"])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if steps:
        ax.plot(steps, losses, lw=0.8, alpha=0.8, label="training (per interval mean)")
    if vsteps:
        ax.plot(vsteps, vlosses, "o-", ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(png_path.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


class _Log:
    """Append-only JSONL log; on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        lines = []
        if keep_until is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("step", 0) <= keep_until:
                    lines.append(line)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in lines))

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")


def _check_resume_config(old: TrainConfig, new: TrainConfig) -> TrainConfig:
    """The saved configuration, with the fields that may change on resume taken from ``new``."""
    changeable = {"steps", "patience", "min_delta", "device", "val_interval", "time_limit_s", "threads"}
    fixed_old = old.model_dump(exclude=changeable)
    fixed_new = new.model_dump(exclude=changeable)
    for key, value in fixed_new.items():
        if value is not None and fixed_old.get(key) != value:
            raise InputError(
                f"resume: {key} was {fixed_old.get(key)!r} in the saved run but is "
                f"{value!r} now; only {', '.join(sorted(changeable))} may change"
            )
    return old.model_copy(update={k: getattr(new, k) for k in changeable})


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
        the network's published defaults (RLN: Li et al., Nature Methods 2022 — Adam,
        ``lr 0.015 · 0.95^(step/600)``, batch 4, RLN loss, percentiles 0.01/99.5, mean-based
        background rejection, no flips).
    data_dir : str or Path
        Folder with ``raw/`` and ``gt/`` (same file names), e.g. from ``lucyd synth``.
    model_dir : str or Path
        Output model folder (created).
    resume : bool
        Continue from ``model_dir/last.pt``: same data, same configuration (``steps``,
        ``patience``, ``device``, ``val_interval`` may change). The result is identical to an
        uninterrupted run.
    overwrite : bool
        Replace an existing model folder's run instead of refusing.

    Returns
    -------
    Path
        ``model_dir``.

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
    from lucyd.nets import build_network, count_parameters, get_network

    data_dir, model_dir = Path(data_dir), Path(model_dir)
    if not isinstance(config, TrainConfig):
        raise InputError("config: expected a TrainConfig")
    cls = get_network(config.model)  # unknown network: clear error before loading data
    get_loss(config.loss or config.defaults()["loss"])
    last_path, best_path = model_dir / "last.pt", model_dir / "best.pt"
    checkpoint = None
    if resume:
        if not last_path.is_file():
            from lucyd.errors import FileFormatError

            raise FileFormatError(f"{model_dir}: nothing to resume (no last.pt)")
        checkpoint = _load_checkpoint(last_path)
        config = _check_resume_config(TrainConfig.load(model_dir / "config.json"), config)
    elif (model_dir / "model.json").exists() or last_path.exists():
        if not overwrite:
            raise InputError(
                f"{model_dir}: already holds a model; use resume to continue it, "
                "overwrite to replace it, or another folder"
            )
        for name in ("best.pt", "last.pt", "log.jsonl", "loss.png", "model.json"):
            (model_dir / name).unlink(missing_ok=True)

    pairs = load_training_pairs(data_dir)
    ndim = pairs[0].raw.ndim
    min_shape = tuple(int(min(p.raw.shape[a] for p in pairs)) for a in range(ndim))
    cfg = config.resolved(ndim, min_shape) if not resume else config
    get_loss(cfg.loss)
    check_loss_patch(cfg.loss, cfg.patch)
    multiple = int(getattr(cls, "size_multiple", 1))
    images = prepare_images(pairs, *cfg.norm_percentiles, clip_gt=cfg.clip_gt,
                            target_norm=cfg.target_norm)
    del pairs
    check_patch(images, cfg.patch, multiple)
    train_imgs, val_imgs, split_info = split_validation(
        images, cfg.val_fraction, cfg.patch, cfg.seed
    )
    check_patch(train_imgs + val_imgs, cfg.patch, multiple)

    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    net = build_network(cfg.model, ndim=ndim, **cfg.net_kwargs).to(device)
    multiple = int(getattr(net, "size_multiple", multiple))  # may depend on the kwargs
    check_patch(train_imgs + val_imgs, cfg.patch, multiple)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = _make_scheduler(cfg, optimizer)
    loss_fn = get_loss(cfg.loss)

    def patch_sampler(imgs, stream: int, *, training: bool = True) -> PatchSampler:
        """The job's patch rule on ``imgs``; its own random ``stream``; validation: no augmentation."""
        return PatchSampler(
            imgs,
            cfg.patch,
            rejection=cfg.patch_rejection,
            threshold=cfg.rejection_threshold,
            augment=cfg.augment and training,
            same_image=cfg.same_image_batch and training,
            seed=np.random.default_rng([cfg.seed, stream]),
        )

    sampler = patch_sampler(train_imgs, 2)
    val_batch = patch_sampler(val_imgs, 3, training=False).sample(cfg.val_patches) if val_imgs else None
    # precise BN: a sampler of its own, rewound before every recalibration (the same batches each
    # time, independent of the training sampler's random state, so resume stays exact)
    recal_sampler, recal_state = None, None
    if cfg.bn_recalibration > 0 and batch_norm_layers(net):
        recal_sampler = patch_sampler(train_imgs, 4)
        recal_state = recal_sampler.state

    def recalibrate() -> None:
        if recal_sampler is None:
            return
        recal_sampler.state = recal_state
        recalibrate_batch_norm(
            net, (recal_sampler.sample(cfg.batch)[0] for _ in range(cfg.bn_recalibration)), device
        )

    step, best_val, since_best, best_record = 0, math.inf, 0, {}
    if checkpoint is not None:
        _check_checkpoint_matches(checkpoint, cfg, last_path)
        net.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        step = int(checkpoint["step"])
        best_val = float(checkpoint["best_val"])
        since_best = int(checkpoint["since_best"])
        best_record = dict(checkpoint.get("best_record") or {})
        _set_rng_states(checkpoint["rng"], sampler)

    model_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(model_dir / "config.json")
    info = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "lucyd_version": lucyd.__version__,
        "network": {
            "name": cfg.model,
            "ndim": ndim,
            "kwargs": dict(cfg.net_kwargs),
            "size_multiple": multiple,
            "parameters": count_parameters(net),
            "receptive_radius": list(receptive_radius(net, ndim)),
        },
        "normalization": {
            "method": "percentile",
            "percentiles": list(cfg.norm_percentiles),
            "clip_gt": cfg.clip_gt,
            "target_norm": cfg.target_norm,
            "prediction": "input normalised with its own global percentiles; "
            "output mapped back as out * (p_hi - p_lo) + p_lo",
            "training_images": [
                {"name": im.name, "raw": list(im.raw_range), "gt": list(im.gt_range)}
                for im in images
            ],
        },
        "voxel_size": list(images[0].voxel_size) if images[0].voxel_size else None,
        "provenance": {
            "data_dir": str(data_dir.resolve()),
            "dataset": _dataset_json(data_dir),
            "images": [im.name for im in images],
            "split": split_info,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "training": {"steps_done": step, "status": "running", **best_record},
    }
    _write_json(model_dir / "model.json", info)
    log = _Log(model_dir / "log.jsonl", keep_until=step if checkpoint is not None else -1)

    def evaluate_val() -> dict:
        net.eval()
        losses, psnrs, ssims = [], [], []
        with torch.no_grad():
            for i in range(0, len(val_batch[0]), cfg.batch):
                x = torch.from_numpy(val_batch[0][i : i + cfg.batch]).to(device)
                y = torch.from_numpy(val_batch[1][i : i + cfg.batch]).to(device)
                loss, pred = loss_fn(net, x, y)
                losses.append(float(loss) * len(x))
                pred = pred.float().cpu().numpy()
                for j in range(len(x)):
                    p, s = _metrics(pred[j, 0], val_batch[1][i + j, 0])
                    psnrs.append(p)
                    if s is not None:
                        ssims.append(s)
        net.train()
        return {
            "val_loss": sum(losses) / len(val_batch[0]),
            "val_psnr": float(np.mean(psnrs)),
            "val_ssim": float(np.mean(ssims)) if ssims else None,
        }

    def save_last() -> None:
        _atomic_torch_save(
            {
                "checkpoint_version": CHECKPOINT_VERSION,
                "model_name": cfg.model,
                "ndim": ndim,
                "net_kwargs": dict(cfg.net_kwargs),
                "step": step,
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_val": best_val,
                "since_best": since_best,
                "best_record": best_record,
                "rng": _rng_states(sampler),
            },
            last_path,
        )

    def save_best(record: dict) -> None:
        _atomic_torch_save(
            {
                "checkpoint_version": CHECKPOINT_VERSION,
                "model_name": cfg.model,
                "ndim": ndim,
                "net_kwargs": dict(cfg.net_kwargs),
                "step": step,
                "model": net.state_dict(),
                "metrics": record,
            },
            best_path,
        )

    net.train()
    t0 = time.perf_counter()
    interval_losses: list[float] = []
    stopped_early = False
    status = "done"
    bar = progress(total=cfg.steps, desc=f"train {cfg.model}", initial=step)
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    try:
        while step < cfg.steps:
            xb, yb = sampler.sample(cfg.batch)
            x = torch.from_numpy(xb).to(device)
            y = torch.from_numpy(yb).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss, _ = loss_fn(net, x, y)
            if not torch.isfinite(loss):
                raise LucydError(
                    f"training diverged at step {step}: the loss is {float(loss)}; "
                    "lower the learning rate (--lr)"
                )
            loss.backward()
            optimizer.step()
            step += 1
            if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step()
            interval_losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{interval_losses[-1]:.4f}")
            log_every = max(1, min(cfg.val_interval, 10))
            if step % log_every == 0 or step == cfg.steps:
                log.write(
                    {
                        "kind": "train",
                        "step": step,
                        "loss": float(np.mean(interval_losses)),
                        "lr": optimizer.param_groups[0]["lr"],
                        "time_s": round(time.perf_counter() - t0, 3),
                    }
                )
                interval_losses = []
            out_of_time = (
                cfg.time_limit_s is not None and time.perf_counter() - t0 >= cfg.time_limit_s
            )
            if step % cfg.val_interval == 0 or step == cfg.steps or out_of_time:
                recalibrate()  # eval-mode statistics of the current weights, before val and saving
                if val_batch is not None:
                    record = {"step": step, **evaluate_val()}
                    log.write({"kind": "val", **record})
                    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        scheduler.step(record["val_loss"])
                    if record["val_loss"] < best_val - cfg.min_delta:
                        best_val, since_best = record["val_loss"], 0
                        best_record = {
                            "best_step": step,
                            "best_val_loss": record["val_loss"],
                            "best_val_psnr": record["val_psnr"],
                            "best_val_ssim": record["val_ssim"],
                        }
                        save_best(record)
                    else:
                        since_best += 1
                else:
                    best_record = {"best_step": step}
                    save_best({"step": step})
                save_last()
                _plot_losses(log.path, model_dir / "loss.png")
                if cfg.patience is not None and since_best >= cfg.patience:
                    stopped_early = True
                    break
                if out_of_time:
                    status = "time-limit"
                    break
    finally:
        bar.close()
        torch.set_num_threads(threads_before)
    info["training"] = {
        "steps_done": step,
        "status": "early-stopped" if stopped_early else status,
        "train_time_s": round(time.perf_counter() - t0, 2),
        **best_record,
    }
    _write_json(model_dir / "model.json", info)
    return model_dir


def _load_checkpoint(path: Path) -> dict:
    from lucyd.errors import FileFormatError

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise FileFormatError(
            f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise FileFormatError(f"{path}: not a lucyd checkpoint")
    if ckpt.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise FileFormatError(
            f"{path}: unknown checkpoint version {ckpt.get('checkpoint_version')!r}"
        )
    return ckpt


def _check_checkpoint_matches(ckpt: dict, cfg: TrainConfig, path: Path) -> None:
    from lucyd.errors import FileFormatError

    if ckpt.get("model_name") != cfg.model:
        raise FileFormatError(
            f"{path}: holds network {ckpt.get('model_name')!r} but the "
            f"configuration says {cfg.model!r}"
        )
