"""Learned restorers: a trained model folder, and self-supervised isotropic restoration."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from lucyd.config import JobConfig
from lucyd.errors import InputError
from lucyd.isotropic import FUSIONS, isotropic_restore
from lucyd.methods.registry import register_method
from lucyd.train import load_model

__all__ = ["IsotropicConfig", "NetworkConfig", "network_words"]


class NetworkConfig(JobConfig):
    """A trained model folder (:func:`lucyd.train.train`) applied by
    :meth:`lucyd.train.RestorationModel.predict`: whole image or tiles with a discarded halo.
    """

    error_label: ClassVar[str] = "network config"

    model: str
    weights: Literal["best", "last"] = "best"
    tile_shape: tuple[int, ...] | None = None
    overlap: tuple[int, ...] | int | None = None
    device: str = "auto"

    @field_validator("model")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not Path(value).is_dir():
            raise ValueError(f"no such model folder: {value}")
        return str(value)


def _model(cfg: NetworkConfig, cache: dict):
    if "model" not in cache:
        cache["model"] = load_model(cfg.model, weights=cfg.weights)
    return cache["model"]


def network_words(model) -> str:
    """``"15,968 weights, 80 steps"`` for a loaded model (benchmark tables)."""
    n = int(model.info["network"].get("parameters", 0))
    steps = model.info.get("training", {}).get("steps_done")
    return f"{n:,} weights" + (f", {steps} steps" if steps is not None else "")


@register_method("network", config=NetworkConfig, task="network", label="network",
                 describe=lambda cfg: network_words(load_model(cfg.model, weights=cfg.weights)))
def trained_network(image, cfg, *, psf, voxel_size, progress, cache):
    """A trained restoration network (RLN, CARE, RCAN, DDN, RBCR, ...) from its model folder."""
    model = _model(cfg, cache)
    return model.predict(image, tile_shape=cfg.tile_shape, overlap=cfg.overlap,
                         device=cfg.device, progress=progress)


class IsotropicConfig(JobConfig):
    """Parameters of :func:`lucyd.isotropic.isotropic_restore` (CARE's isotropic recipe).

    ``z_factor`` None: taken from the voxel size given at restore time (``dz / dx``).
    """

    error_label: ClassVar[str] = "isotropic config"

    z_factor: float | None = Field(None, ge=1.0, allow_inf_nan=False)
    network: str = "care"
    net_kwargs: dict[str, Any] | None = None
    steps: int = Field(2000, ge=1)
    patch: int | tuple[int, int] | None = None
    batch: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0, allow_inf_nan=False)
    photons: float | None = Field(None, gt=0, allow_inf_nan=False)
    max_slices: int | None = Field(None, ge=1)
    fuse: Literal[FUSIONS] = "geometric"  # type: ignore[valid-type]
    seed: int = Field(0, ge=0)
    device: str = "auto"


@register_method("isotropic", config=IsotropicConfig, task="isotropic", label="isotropic",
                 changes_shape=True,
                 describe=lambda cfg: f"{cfg.network.upper()} 2D, {cfg.steps} steps")
def isotropic(image, cfg, *, psf, voxel_size, progress, cache):
    """Self-supervised isotropic restoration (Weigert et al., MICCAI 2017; Nat. Methods 2018)."""
    z_factor = cfg.z_factor
    if z_factor is None:
        if voxel_size is None or len(voxel_size) != 3:
            raise InputError("voxel_size: isotropic restoration needs the (dz, dy, dx) voxel "
                             "size or an explicit z_factor")
        z_factor = voxel_size[0] / voxel_size[2]
    params = cfg.model_dump(exclude={"z_factor"})
    return np.asarray(isotropic_restore(image, z_factor, voxel_size=voxel_size, **params))
