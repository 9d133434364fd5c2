"""Picklable tile tasks for restoration networks (:func:`lucyd.tiling.run_tiles`).

:class:`NetworkTask` describes a network prediction by the model (its network and card,
pickled with the task and sent once to every dask worker, so workers need no access to the
model folder) or by a model folder that each worker loads once. It runs one pass of the
network for all output channels. :class:`EnsembleTask` runs the members of a deep ensemble
on the same block and combines them voxel by voxel into the mean and the uncertainty maps,
so ensembles and uncertainty maps are computed tile by tile, out of core.

:func:`plan_for_model` plans crop-and-stitch tiles on the network's size multiple with a halo of
at least its receptive radius (rounded up to the multiple), so that every tile sees the same
pooling grid and the same context as the whole image: tiles equal whole-image prediction up
to float32 round-off, and the result does not depend on the executor (bit-identical).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from lucyd.device import resolve_device
from lucyd.errors import InputError
from lucyd.normalization import Normalizer
from lucyd.tiling.engine import tile_shape_for_budget
from lucyd.tiling.runner import TilePlan, plan_partition

_MODELS: dict[tuple[str, str], object] = {}

#: bytes per voxel of a tile besides the network: input block, its normalised copy and
#: padding, the output channels and their kept copies (float32)
IO_BYTES_PER_VOXEL = 24
#: measured peak / sum of the outputs of the network's leaf modules (CPU inference; RLN 0.9-1.2)
ACTIVATION_SAFETY = 1.25


def _load(model_dir: str, weights: str):
    key = (model_dir, weights)
    if key not in _MODELS:
        from lucyd.train.model import IncompleteModelWarning, load_model  # train.model imports tiling: a cycle

        with warnings.catch_warnings():  # said once by the caller, not once per worker
            warnings.simplefilter("ignore", IncompleteModelWarning)
            _MODELS[key] = load_model(model_dir, weights=weights)
    return _MODELS[key]


def worker_device(device: str):
    """``device`` resolved on this worker; with several GPUs, one GPU per dask worker.

    ``auto``/``cuda`` inside a dask worker whose name is an integer (the workers of a
    ``LocalCluster``: 0, 1, …) on a machine with ``G`` GPUs gives ``cuda:(name mod G)``, so
    ``--cluster local:G`` runs one worker per GPU. Workers started by ``dask cuda worker``
    (dask-cuda) see one GPU each through ``CUDA_VISIBLE_DEVICES`` and use ``cuda:0``.
    """
    dev = resolve_device(device)
    if dev.type != "cuda" or dev.index is not None:
        return dev

    count = torch.cuda.device_count()
    if count < 2:
        return dev
    try:
        from distributed import get_worker  # optional extra (lucyd[cluster])

        name = get_worker().name
    except (ImportError, ValueError):  # not inside a dask worker
        return dev
    # LocalCluster workers are named 0, 1, ...; `dask worker --name n --nworkers k`: n-0, n-1, ...
    tail = str(name).rsplit("-", 1)[-1]
    index = int(tail) % count if tail.isdigit() else 0
    return torch.device("cuda", index)


@dataclass(frozen=True)
class NetworkTask:
    """Predict one block with a restoration network, in the input's intensity scale.

    Attributes
    ----------
    lo, scale : float
        Global normalisation of the whole input (``(v − lo) / scale``), from
        ``RestorationModel.input_range`` — computed once, so tiles are consistent.
    model_dir : str, optional
        Model folder (:func:`lucyd.train.load_model`): identifies the model in the resume
        record; loaded (once per process) only when ``model`` is None.
    weights : str
        ``"best"`` or ``"last"``.
    model : RestorationModel, optional
        The model in memory. It travels with the task (the dask executor sends the task once
        to every worker), so workers need no access to the model folder.
    device : str
        ``auto``, ``cpu`` or ``cuda`` (resolved on the worker, :func:`worker_device`).
    all_channels : bool
        Return every output channel ``(C, *block)`` (one network pass), else channel 0.
    """

    lo: float
    scale: float
    model_dir: str | None = None
    weights: str = "best"
    model: object = field(default=None, compare=False, repr=False)
    device: str = "cpu"
    all_channels: bool = False

    @classmethod
    def for_model(cls, model, array, *, device: str = "cpu", all_channels: bool = False,
                  weights: str = "best"):
        """The task for ``model`` applied to ``array`` (global percentiles of ``array``)."""
        lo, hi = model.input_range(array)
        scale = hi - lo if hi > lo else 1.0
        path = getattr(model, "path", None)
        return cls(
            lo=float(lo),
            scale=float(scale),
            model_dir=None if path is None else str(path),
            weights=weights,
            model=model,
            device=device,
            all_channels=all_channels,
        )

    def fingerprint(self) -> str:
        return repr((self.lo, self.scale, self.model_dir, self.weights, self.all_channels))

    def restoration_model(self):
        return self.model if self.model is not None else _load(self.model_dir, self.weights)

    def __call__(self, block: np.ndarray, tile=None) -> np.ndarray:
        model = self.restoration_model()
        dev = worker_device(self.device)
        model.net.to(dev).eval()
        full = tuple(slice(0, n) for n in block.shape)
        # the block starts on the size multiple (plan_for_model); _run_region pads its end
        norm_in = Normalizer(self.lo, self.lo + self.scale)
        norms = (norm_in, norm_in.rescaled(model.output_ratio))
        res = model._run_region(block, full, block.shape, norms, dev)
        return res if self.all_channels else res[0]


#: channel order of :class:`EnsembleTask`'s output (those present)
ENSEMBLE_CHANNELS = ("mean", "total", "laplace_scale", "disagreement")


def ensemble_channels(k: int, probabilistic: bool) -> tuple[str, ...]:
    """The channels :class:`EnsembleTask` returns for ``k`` members."""
    names = ["mean"]
    if probabilistic or k >= 2:
        names.append("total")
    if probabilistic:
        names.append("laplace_scale")
    if k >= 2:
        names.append("disagreement")
    return tuple(names)


def combine_members(outputs, probabilistic: bool) -> dict[str, np.ndarray]:
    """Mean and uncertainty maps of the members' outputs ``(C, *block)`` (see
    :func:`lucyd.train.uncertainty.predict_with_uncertainty` for the formulas)."""
    k = len(outputs)
    mean = m2 = scale_sum = var_sum = None
    for i, out in enumerate(outputs):
        mu = np.asarray(out[0], dtype=np.float32)
        if mean is None:
            mean = np.zeros_like(mu)
            m2 = np.zeros_like(mu)
        # Welford's running mean and sum of squared deviations (stable in float32)
        delta = mu - mean
        mean += delta / np.float32(i + 1)
        m2 += delta * (mu - mean)
        if probabilistic:
            sigma = np.clip(np.asarray(out[1], dtype=np.float32), 0.0, None)
            if scale_sum is None:
                scale_sum = np.zeros_like(mu)
                var_sum = np.zeros_like(mu)
            scale_sum += sigma
            var_sum += np.float32(2.0) * sigma * sigma
    maps = {"mean": mean}
    disagreement = np.sqrt(np.clip(m2 / np.float32(k), 0.0, None)) if k >= 2 else None
    if probabilistic:
        total_var = var_sum / np.float32(k)
        if disagreement is not None:
            total_var = total_var + disagreement * disagreement
        maps["total"] = np.sqrt(total_var)
        maps["laplace_scale"] = scale_sum / np.float32(k)
    elif disagreement is not None:
        maps["total"] = disagreement
    if disagreement is not None:
        maps["disagreement"] = disagreement
    return maps


@dataclass(frozen=True)
class EnsembleTask:
    """Run every member of an ensemble on a block and combine them voxel by voxel.

    Returns ``(C, *block)`` with the channels of :func:`ensemble_channels` (mean restoration,
    then the uncertainty maps), all in the input's intensity units.

    Attributes
    ----------
    members : tuple of NetworkTask
        One task per member, each returning all its channels.
    probabilistic : bool
        Members predict a Laplace scale in channel 1.
    """

    members: tuple[NetworkTask, ...]
    probabilistic: bool = False

    @property
    def channels(self) -> tuple[str, ...]:
        return ensemble_channels(len(self.members), self.probabilistic)

    def fingerprint(self) -> str:
        return repr((self.probabilistic, [m.fingerprint() for m in self.members]))

    def __call__(self, block: np.ndarray, tile=None) -> np.ndarray:
        outputs = []
        for i, member in enumerate(self.members):
            out = member(block, tile)
            if self.probabilistic and out.shape[0] < 2:
                raise InputError(f"model: member {i} is marked probabilistic but gives "
                                 f"{out.shape[0]} output channel")
            outputs.append(out)
        maps = combine_members(outputs, self.probabilistic)
        return np.stack([maps[name] for name in self.channels]).astype(np.float32, copy=False)


def plan_for_model(model, shape, tile_shape, chunks=None) -> TilePlan:
    """Crop-and-stitch tiles for ``model``: halo = its halo, starts on its size multiple."""
    return plan_partition(
        shape, tile_shape, halo=model.halo, multiple=model.size_multiple, chunks=chunks
    )


def activation_bytes_per_voxel(net, ndim: int, multiple: int = 1) -> float:
    """Bytes per input voxel of ``net``'s activations at inference (upper estimate).

    The sum of the outputs of the network's leaf modules on a small probe, per probe voxel.
    On CPU the measured peak of one forward pass (RLN, 32×128×128 and 64×256×256 blocks: 517
    and 384 bytes per voxel) stays within :data:`ACTIVATION_SAFETY` times this sum (433).
    """
    side = 16 if ndim == 3 else 64
    side = int(math.ceil(side / multiple) * multiple)
    probe = (side,) * ndim
    total = [0]

    def hook(module, inputs, output):
        if not list(module.children()) and torch.is_tensor(output):
            total[0] += output.numel() * output.element_size()

    param = next(net.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        with torch.inference_mode():
            net(torch.zeros((1, 1, *probe), device=dev))
    finally:
        for h in handles:
            h.remove()
    return total[0] / math.prod(probe)


def tile_shape_for_network(model, shape: Sequence[int], budget: float, members: int = 1
                           ) -> tuple[int, ...]:
    """Largest tile (halo included) whose prediction fits ``budget`` bytes on one worker.

    Memory of a tile: ``ACTIVATION_SAFETY ×`` :func:`activation_bytes_per_voxel` plus
    :data:`IO_BYTES_PER_VOXEL` per voxel (``members`` outputs kept for an ensemble), on the
    network's size multiple.
    """
    per_voxel = ACTIVATION_SAFETY * activation_bytes_per_voxel(
        model.net, model.ndim, model.size_multiple
    ) + IO_BYTES_PER_VOXEL * max(1, members)
    m = model.size_multiple
    halo = model.halo
    try:
        tile = tile_shape_for_budget(tuple(shape), 0, budget, per_voxel, halo=halo)
    except InputError:
        # the smallest tile tile_shape_for_budget admits: 8 voxels beside the halo per axis
        need = per_voxel * math.prod(min(n, 2 * h + 8) for n, h in zip(shape, halo, strict=True))
        raise InputError(
            f"max_memory: {budget / 1e6:.0f} MB is too small for {model.name} tiles with a halo "
            f"of {halo} voxels (about {need / 1e6:.0f} MB needed per worker)"
        ) from None
    # on the size multiple, never beyond the image
    return tuple(n if t >= n else max(m, (t // m) * m) for t, n in zip(tile, shape, strict=True))
