"""Picklable tile tasks for restoration networks (:func:`lucyd.tiling.run_tiles`).

:class:`NetworkTask` describes a network prediction by its model folder (loaded once per
worker process and cached) or, for a model that exists only in memory, by the model itself
(pickled with the task, sent once per worker by the dask executor). It runs one pass of the
network for all output channels. :func:`plan_for_model` plans tiles on the network's size
multiple with a halo of at least its receptive radius, so that tiles equal whole-image
prediction away from round-off and results do not depend on the executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lucyd.normalization import Normalizer
from lucyd.tiling.runner import TilePlan, plan_partition

_MODELS: dict[tuple[str, str], object] = {}


def _load(model_dir: str, weights: str):
    key = (model_dir, weights)
    if key not in _MODELS:
        from lucyd.train.model import load_model

        _MODELS[key] = load_model(model_dir, weights=weights)
    return _MODELS[key]


@dataclass(frozen=True)
class NetworkTask:
    """Predict one block with a restoration network, in the input's intensity scale.

    Attributes
    ----------
    lo, scale : float
        Global normalisation of the whole input (``(v − lo) / scale``), from
        ``RestorationModel.input_range`` — computed once, so tiles are consistent.
    model_dir : str, optional
        Model folder (:func:`lucyd.train.load_model`); preferred: workers load it themselves.
    weights : str
        ``"best"`` or ``"last"``.
    model : RestorationModel, optional
        In-memory model, used when there is no folder.
    device : str
        ``auto``, ``cpu`` or ``cuda`` (resolved on the worker).
    all_channels : bool
        Return every output channel ``(C, *block)`` (one network pass), else channel 0.
    """

    lo: float
    scale: float
    model_dir: str | None = None
    weights: str = "best"
    model: object = field(default=None, compare=False)
    device: str = "cpu"
    all_channels: bool = False

    @classmethod
    def for_model(cls, model, array, *, device: str = "cpu", all_channels: bool = False):
        """The task for ``model`` applied to ``array`` (global percentiles of ``array``)."""
        lo, hi = model.input_range(array)
        scale = hi - lo if hi > lo else 1.0
        path = getattr(model, "path", None)
        return cls(
            lo=float(lo),
            scale=float(scale),
            model_dir=None if path is None else str(path),
            model=model if path is None else None,
            device=device,
            all_channels=all_channels,
        )

    def fingerprint(self) -> str:
        return repr((self.lo, self.scale, self.model_dir, self.weights, self.all_channels))

    def __call__(self, block: np.ndarray, tile=None) -> np.ndarray:
        from lucyd.device import resolve_device

        model = self.model if self.model is not None else _load(self.model_dir, self.weights)
        dev = resolve_device(self.device)
        model.net.to(dev).eval()
        full = tuple(slice(0, n) for n in block.shape)
        # the block starts on the size multiple (plan_for_model); _run_region pads its end
        norm_in = Normalizer(self.lo, self.lo + self.scale)
        norms = (norm_in, norm_in.rescaled(model.output_ratio))
        res = model._run_region(block, full, block.shape, norms, dev)
        return res if self.all_channels else res[0]


def plan_for_model(model, shape, tile_shape, chunks=None) -> TilePlan:
    """Crop-and-stitch tiles for ``model``: halo = its halo, starts on its size multiple."""
    return plan_partition(
        shape, tile_shape, halo=model.halo, multiple=model.size_multiple, chunks=chunks
    )
