"""The training job's configuration (:class:`TrainConfig`) and per-network defaults.

Fields left at ``None`` take the network's published recipe (the ``recipe`` of its
:class:`lucyd.nets.NetworkSpec`, in this class's field names: Li et al. 2022 for RLN; Weigert
et al. 2018 for CARE; Chen et al. 2021 for RCAN; Guo et al. 2020 for DDN), resolved by
:meth:`TrainConfig.resolved` when training starts; the resolved configuration is what is
saved as ``config.json`` in the model folder.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from lucyd.config import JobConfig
from lucyd.errors import InputError
from lucyd.nets import get_spec

#: defaults for the recipe fields a network's :class:`~lucyd.nets.NetworkSpec` does not set
GENERIC_DEFAULTS: dict[str, Any] = {
    "loss": "mae",
    "lr": 4e-4,
    "schedule": "constant",
    "lr_decay": 0.5,
    "lr_decay_steps": 1000,
    "batch": 4,
    "patch_rejection": "none",
    "rejection_threshold": None,
    "norm_percentiles": (1.0, 99.8),
    "augment": True,
    "same_image_batch": False,
}


def network_recipe(model: str) -> dict[str, Any]:
    """The training recipe of network ``model``: its spec's ``recipe`` over :data:`GENERIC_DEFAULTS`."""

    merged = dict(GENERIC_DEFAULTS)
    merged.update(get_spec(model).recipe)
    return merged


Schedule = Literal["exp", "plateau", "quarter", "constant"]
Rejection = Literal["none", "mean", "care", "fraction"]


class TrainConfig(JobConfig):
    """Everything that defines a training run (saved as ``config.json`` in the model folder).

    Attributes
    ----------
    model : str
        Registered network name (``lucyd.nets.available_networks()``), e.g. ``"rln"``.
    net_kwargs : dict
        Extra keyword arguments of the network (``ndim`` is set from :attr:`ndim`).
    ndim : {2, 3} or None
        Spatial dimensions; None = that of the training data; 2 on 3D data trains a 2D model on
        the volumes' planes.
    patch : tuple of int or None
        Training patch shape (z, y, x) or (y, x); None = 64 per axis (3D) / 128 (2D),
        clipped to the data. Each size must be a multiple of the network's ``size_multiple``.
    batch : int or None
        Patches per step (RLN: 4).
    steps : int
        Optimiser steps (RLN: 10,000).
    lr : float or None
        Initial Adam learning rate (RLN: 0.015).
    schedule : {"exp", "plateau", "quarter", "constant"} or None
        ``exp``: ``lr · lr_decay^(step / lr_decay_steps)`` (continuous; RLN, DDN);
        ``plateau``: ×``lr_decay`` after ``lr_decay_steps`` validations without improvement
        (CARE); ``quarter``: ×``lr_decay`` every quarter of ``steps`` (RCAN); ``constant``.
    lr_decay, lr_decay_steps : float, int or None
        Schedule parameters (RLN: 0.95 per 600 steps).
    loss : str or None
        Loss name in :data:`lucyd.train.losses.LOSSES` (``rln``, ``rln_local``, ``mae``, ``mse``,
        ``laplace_nll``, ...); None: the network's, or ``laplace_nll`` when
        ``net_kwargs["probabilistic"]`` is true.
    norm_percentiles : (float, float) or None
        Percentiles (p_lo, p_hi) of the per-image normalisation ``(v − p_lo)/(p_hi − p_lo)``
        of input and target (RLN: 0.01, 99.5).
    target_scale : {"own", "input"}
        ``own``: the target is normalised with its own percentiles (RLN, CARE); the output is
        mapped back to the input's percentile range, so its intensity scale is the input's
        range, not its flux. ``input``: the target is normalised with the *input's* range
        (same offset and scale), so the network learns the target in the input's units and
        predictions keep the input's intensity scale and flux (the target must then be in the
        input's units, e.g. a synthetic object in photo-electrons whose blur is the raw's
        expectation).
    target_norm : {"percentile", "fit_to_input"}
        ``percentile``: the target normalised with its own percentiles; ``fit_to_input``: the
        target first fitted affinely to the input (least squares) and normalised with the
        input's percentiles (pairs whose intensities were rescaled independently, e.g. W2S).
    clip_gt : bool
        Clip the normalised target at ≥ 0 (RLN).
    target_scale : {"own", "input"}
        ``own`` (the published recipes): the target is normalised with its own percentiles;
        predictions are mapped back with the training pairs' mean target-to-input scale ratio
        (the targets' flux on average). ``input``: the target keeps its own offset (``p_lo``)
        but is divided by the *input's* ``p_hi − p_lo``, so the network learns outputs in the
        input's intensity units and each prediction keeps the flux its target would have.
    augment : bool or None
        Random flips on every axis and 90° rotations in the (y, x) plane.
    patch_rejection : {"none", "mean", "care", "fraction"} or None
        Background-patch rejection: ``mean`` redraws a patch whose input mean is below
        ``rejection_threshold`` × the image mean (RLN, 0.8); ``care`` samples where the
        max-filtered target exceeds ``rejection_threshold`` × its 99.9th percentile (CARE,
        0.4); ``fraction`` keeps a patch when ≥ 50 % of its target exceeds
        ``rejection_threshold`` (RCAN, 0.25).
    rejection_threshold : float or None
        See above.
    same_image_batch : bool or None
        Draw all patches of a batch from one image (RLN's reference does).
    val_fraction : float
        Fraction of the images held out for validation (at least one when there are ≥ 2
        images); with one image, that fraction of its longest axis. 0 disables validation.
    val_interval : int
        Steps between validations (and checkpoints of ``last.pt`` and ``model.json``).
    val_patches : int
        Validation budget: central crops of up to this many held-out images (evenly spread),
        together holding as many voxels as this many training patches, restored through the
        prediction path and scored with :func:`lucyd.metrics.evaluate`
        (:mod:`lucyd.train.validation`); ``best.pt`` has the highest mean validation PSNR.
    patience : int or None
        Early stopping after this many validations without improvement (None: never).
    min_delta : float
        A validation PSNR counts as an improvement when it exceeds the best by more than this (dB).
    time_limit_s : float or None
        Stop (after validating and checkpointing) once training has run this long, in
        seconds of wall time — a budget on shared machines; resume continues it.
    bn_recalibration : int
        Batches of training patches (``batch`` each, from a fixed sampler of their own) forwarded
        in train mode without gradients to re-estimate every batch-norm layer's running mean and
        variance as an exact average ("precise BN", Wu & Johnson 2021) before each validation
        and checkpoint; 0 keeps the training-time moving averages. Networks without batch norm
        are unaffected.
    threads : int or None
        CPU threads of torch during training (``torch.set_num_threads``, restored afterwards);
        None: torch's default.
    seed : int
        Seeds initialisation, patch sampling and the validation split.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    error_label: ClassVar[str] = "train config"

    model: str = "rln"
    net_kwargs: dict[str, Any] = Field(default_factory=dict)
    ndim: Literal[2, 3] | None = None
    patch: tuple[int, ...] | None = None
    batch: int | None = Field(None, ge=1)
    steps: int = Field(10_000, ge=1)
    lr: float | None = Field(None, gt=0, allow_inf_nan=False)
    schedule: Schedule | None = None
    lr_decay: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    lr_decay_steps: int | None = Field(None, ge=1)
    loss: str | None = None
    norm_percentiles: tuple[float, float] | None = None
    target_scale: Literal["own", "input"] = "own"
    target_norm: Literal["percentile", "fit_to_input"] = "percentile"
    clip_gt: bool = True
    target_scale: Literal["own", "input"] = "own"
    augment: bool | None = None
    patch_rejection: Rejection | None = None
    rejection_threshold: float | None = Field(None, ge=0, allow_inf_nan=False)
    same_image_batch: bool | None = None
    val_fraction: float = Field(0.1, ge=0, lt=1)
    val_interval: int = Field(200, ge=1)
    val_patches: int = Field(8, ge=1)
    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.0, ge=0, allow_inf_nan=False)
    time_limit_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    bn_recalibration: int = Field(20, ge=0)
    threads: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"

    @field_validator("patch")
    @classmethod
    def _patch(cls, v):
        if v is not None and (len(v) not in (2, 3) or any(int(s) < 2 for s in v)):
            raise ValueError(f"expected 2 or 3 sizes of at least 2 px, got {v}")
        return v

    @field_validator("norm_percentiles")
    @classmethod
    def _percentiles(cls, v):
        if v is not None and not (0 <= v[0] < v[1] <= 100):
            raise ValueError(f"expected 0 <= p_lo < p_hi <= 100, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.patch is not None and self.ndim is not None and len(self.patch) != self.ndim:
            raise ValueError(f"patch has {len(self.patch)} sizes but ndim is {self.ndim}")
        if "ndim" in self.net_kwargs:
            raise ValueError("give ndim as the ndim field, not in net_kwargs")
        return self

    def defaults(self) -> dict[str, Any]:
        """The network's default recipe (:func:`network_recipe`)."""
        return network_recipe(self.model)

    def resolved(self, ndim: int, data_shape: tuple[int, ...] | None = None) -> TrainConfig:
        """A copy with every ``None`` filled from the network's defaults and the data.

        Parameters
        ----------
        ndim : int
            Dimensionality of the training data.
        data_shape : tuple of int, optional
            Smallest extent of the training images per axis (default patch is clipped to it).
        """
        if self.ndim is not None and self.ndim != ndim:  # (2D on volumes: the trainer passes 2)
            raise InputError(f"train config: ndim is {self.ndim} but the training data are {ndim}D")
        d = self.defaults()
        upd: dict[str, Any] = {"ndim": ndim, "model": self.model.lower()}
        for key in (
            "batch",
            "lr",
            "schedule",
            "lr_decay",
            "lr_decay_steps",
            "loss",
            "norm_percentiles",
            "augment",
            "patch_rejection",
            "rejection_threshold",
            "same_image_batch",
        ):
            if getattr(self, key) is None:
                upd[key] = d.get(key)
        if self.loss is None and self.net_kwargs.get("probabilistic"):
            upd["loss"] = "laplace_nll"  # mean + Laplace-scale output (CARE probabilistic)
        if upd.get("schedule", self.schedule) != "constant":
            if upd.get("lr_decay", self.lr_decay) is None:
                upd["lr_decay"] = 0.5
            if upd.get("lr_decay_steps", self.lr_decay_steps) is None:
                upd["lr_decay_steps"] = 1000
        if self.patch is None:

            m = int(get_spec(self.model).size_multiple)
            base = 64 if ndim == 3 else 128
            shape = data_shape or (base,) * ndim
            upd["patch"] = tuple(max(m, (min(base, s) // m) * m) for s in shape)
        elif len(self.patch) != ndim:
            raise InputError(
                f"patch: has {len(self.patch)} sizes but the training data are {ndim}D"
            )
        return self.model_copy(update=upd)
