"""Isotropic restoration of anisotropic stacks, self-supervised from the stack itself.

The recipe of CARE (Weigert et al., "Content-aware image restoration: pushing the limits of
fluorescence microscopy", Nature Methods 15:1090, 2018; "Isotropic reconstruction of 3D
fluorescence microscopy images using convolutional neural networks", MICCAI 2017):

1. **Training pairs from lateral slices.** Every xy plane of the stack has lateral resolution
   and sampling. Each plane (and its transpose) is degraded along its first axis so that it
   looks like an axial (xz / yz) view: convolved with the axial PSF (or a Gaussian of the
   axial/lateral width ratio), optionally given camera noise, sub-sampled every ``z_factor``
   pixels and re-upsampled linearly onto the original grid. The pair is (degraded plane,
   original plane).
2. **A 2D network** (CARE 2D by default) is trained on these pairs with lucyd's generic trainer
   (:func:`lucyd.train.train`), without 90° rotations so that the degraded axis stays axis 0.
3. **Prediction.** The stack is upsampled along z by ``z_factor`` (linear interpolation), and
   the network restores every XZ slice (``stack[:, y, :]``) and every YZ slice
   (``stack[:, :, x]``) — in both, axis 0 is z, the axis degraded in training.
4. **Fusion.** The two restored volumes are fused voxel-wise by their geometric mean,
   ``sqrt(max(a, 0) · max(b, 0))`` (as CARE/CSBDeep's ``IsotropicCARE``), which suppresses
   artefacts present in only one of the two views; ``fuse="mean"`` gives the arithmetic mean
   (keeps negative values of background-subtracted data).

The output has ``round(nz · z_factor)`` planes, voxel size ``(dz / z_factor, dy, dx)``, and
the input's intensity scale (float32). Like every restoration, it must not be used for
intensity quantification (Weigert et al. 2018).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lucyd.errors import InputError
from lucyd.io import ImageMetadata, write_image
from lucyd.isotropic_pairs import (  # noqa: F401 (public names of lucyd.isotropic)
    _check_factor,
    _check_lazy_stack,
    _check_stack,
    axial_kernel,
    degrade_lateral,
    training_pairs,
)
from lucyd.nets import get_network
from lucyd.normalization import Normalizer
from lucyd.synth.degrade import axis0_interpolation, upsample_axis0
from lucyd.tiling import plan_partition, run_tiles, tile_shape_for_budget
from lucyd.tiling.tasks import ACTIVATION_SAFETY, activation_bytes_per_voxel, worker_device
from lucyd.train import TrainConfig, load_model, train
from lucyd.train.model import _as_tuple, _bytes
from lucyd.validation import as_voxel_size

#: the fusion rules of the XZ and YZ restorations
FUSIONS = ("geometric", "mean")


def isotropic_voxel_size(voxel_size, z_factor: float) -> tuple[float, float, float] | None:
    """Voxel size ``(dz / z_factor, dy, dx)`` of the restored stack (µm), or None."""
    if voxel_size is None:
        return None

    dz, dy, dx = as_voxel_size(voxel_size, 3)
    return (dz / float(z_factor), dy, dx)


def upsample_z_shape(shape, z_factor: float) -> tuple[int, int, int]:
    """Shape ``(round(nz · z_factor), y, x)`` of the restored stack."""
    return (int(round(int(shape[0]) * _check_factor(z_factor))), int(shape[1]), int(shape[2]))


def upsample_z(stack: np.ndarray, z_factor: float, n_out: int | None = None) -> np.ndarray:
    """Linear interpolation along z onto ``round(nz · z_factor)`` planes (plane j at j / f).

    Output plane ``j`` lies at input position ``j / z_factor``; planes beyond the last input
    plane repeat it (no extrapolation).
    """

    arr = np.asarray(stack, dtype=np.float32)
    f = _check_factor(z_factor)
    n = int(round(arr.shape[0] * f)) if n_out is None else int(n_out)
    return upsample_axis0(arr, f, n)


class UpsampledZ:
    """The z-upsampled stack (:func:`upsample_z`) as a lazy array: a slice reads only the input
    planes it interpolates between, so a stack larger than memory (zarr, memmap) is upsampled
    tile by tile. Values are bit-identical to :func:`upsample_z` of the whole stack (the same
    float32 operations, voxel by voxel).

    Supports ``view[...]`` and slices (a step on axis 0, for percentile sampling).
    """

    def __init__(self, source, z_factor: float, n_out: int | None = None):
        self.source = source
        self.factor = _check_factor(z_factor)
        nz = int(source.shape[0])
        n = int(round(nz * self.factor)) if n_out is None else int(n_out)
        self.shape = (n, int(source.shape[1]), int(source.shape[2]))
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __getitem__(self, key) -> np.ndarray:
        if key is Ellipsis:
            key = ()
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            key = tuple(k for k in key if k is not Ellipsis)
        if len(key) > 3 or not all(isinstance(k, slice) for k in key):
            raise IndexError("UpsampledZ: index with slices")
        key = key + (slice(None),) * (3 - len(key))
        planes = np.arange(*key[0].indices(self.shape[0]))
        lateral = tuple(key[1:])
        i0, i1, w = axis0_interpolation(int(self.source.shape[0]), self.factor, planes)
        w = w.reshape(-1, 1, 1)
        if planes.size == 0:
            return np.zeros((0, *np.empty(self.shape[1:])[lateral].shape), np.float32)
        lo, hi = int(i0.min()), int(i1.max()) + 1
        if hi - lo <= 2 * planes.size:  # a contiguous run of input planes
            block = np.asarray(self.source[(slice(lo, hi), *lateral)], dtype=np.float32)
            a, b = block[i0 - lo], block[i1 - lo]
        else:  # sparse planes (a strided sample): read only those
            needed = np.unique(np.concatenate([i0, i1]))
            read = {int(i): np.asarray(self.source[(int(i), *lateral)], dtype=np.float32)
                    for i in needed}
            a = np.stack([read[int(i)] for i in i0])
            b = np.stack([read[int(i)] for i in i1])
        return (a * (1 - w) + b * w).astype(np.float32)


def _predict_slices(model, volume: np.ndarray, axis: int, norms, device,
                    batch_size: int) -> np.ndarray:
    """Run the 2D network on every slice of ``volume`` along ``axis`` (1: XZ, 2: YZ)."""

    net = model.net
    m = int(model.size_multiple)
    slices = np.moveaxis(volume, axis, 0)  # (n, z, other)
    n, a, b = slices.shape
    pa, pb = (-a) % m, (-b) % m
    out = np.empty((n, a, b), np.float32)
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            blk = norms[0].apply(slices[i:i + batch_size])
            if pa or pb:
                blk = np.pad(blk, ((0, 0), (0, pa), (0, pb)), mode="symmetric")
            x = torch.from_numpy(np.ascontiguousarray(blk[:, None])).to(device)
            y = net(x)[:, 0].float().cpu().numpy()
            out[i:i + batch_size] = norms[1].invert(y[:, :a, :b])
    return np.moveaxis(out, 0, axis)


@dataclass(frozen=True)
class IsotropicTask:
    """Picklable tile task: restore the XZ and YZ slices of a block of the z-upsampled stack
    with a 2D model and fuse them (:func:`lucyd.tiling.run_tiles`).

    ``lo``, ``scale``: the global normalisation of the whole upsampled stack; ``model``: the
    2D :class:`~lucyd.train.RestorationModel` (pickled with the task, so workers need no access
    to its folder). Returns the fused block, or ``(fused, xz, yz)`` with ``views``.
    """

    model: object = field(repr=False)
    lo: float
    scale: float
    fuse: str = "geometric"
    device: str = "cpu"
    batch_size: int = 8
    views: bool = False

    def fingerprint(self) -> str:
        return repr((str(getattr(self.model, "path", None)), self.lo, self.scale, self.fuse,
                     self.batch_size, self.views))

    def __call__(self, block: np.ndarray, tile=None) -> np.ndarray:
        dev = worker_device(self.device)
        self.model.net.to(dev).eval()
        norm_in = Normalizer(self.lo, self.lo + self.scale)
        norms = (norm_in, norm_in.rescaled(self.model.output_ratio))
        xz = _predict_slices(self.model, block, 1, norms, dev, self.batch_size)
        yz = _predict_slices(self.model, block, 2, norms, dev, self.batch_size)
        if self.fuse == "geometric":
            fused = np.sqrt(np.clip(xz, 0, None) * np.clip(yz, 0, None))
        else:
            fused = 0.5 * (xz + yz)
        fused = fused.astype(np.float32, copy=False)
        return np.stack([fused, xz, yz]) if self.views else fused


def _isotropic_tile(model, shape, budget, batch_size) -> tuple[int, ...]:
    """Largest (z, y, x) tile of the upsampled stack whose prediction fits ``budget`` bytes."""
    per_slice_voxel = ACTIVATION_SAFETY * activation_bytes_per_voxel(
        model.net, 2, model.size_multiple)

    def memory_of(t):
        # block, its normalised slices, two views, the fused result and copies: ~10 floats;
        # one batch of slices through the network at a time
        return 40 * math.prod(t) + per_slice_voxel * batch_size * t[0] * max(t[1], t[2])

    return tile_shape_for_budget(shape, 0, budget, 0, halo=_isotropic_halo(model),
                                 memory_of=memory_of)


def _isotropic_halo(model) -> tuple[int, int, int]:
    """Context of a tile: the 2D model's halo along z and along both lateral axes."""
    h = model.halo
    return (int(h[0]), int(max(h)), int(max(h)))


def predict_isotropic(model, stack, z_factor: float, *, fuse: str = "geometric",
                      device: str = "auto", batch_size: int = 8,
                      return_views: bool = False, tile_shape=None, cluster=None,
                      max_memory=None, progress: bool = False, out=None):
    """Restore a stack with an already trained 2D isotropic model (steps 3–4 of the recipe).

    Out of core: the stack may be lazy (zarr, memmap); the z-upsampled stack is never formed
    whole (:class:`UpsampledZ` gives each tile its planes) and with ``out`` the result is written
    tile by tile, so with ``max_memory`` the memory is that of one tile.

    Parameters
    ----------
    model : lucyd.train.RestorationModel or path
        A 2D model trained on pairs from :func:`training_pairs` (axis 0 degraded).
    stack : array_like
        ``(z, y, x)`` anisotropic stack (numpy, or lazy: zarr, memmap, read block by block).
    z_factor : float
        Axial / lateral sampling ratio (≥ 1).
    fuse : {"geometric", "mean"}
        Fusion of the XZ and YZ restorations (CARE: geometric mean of the non-negative parts).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    batch_size : int
        Slices per forward pass.
    return_views : bool
        Also return the XZ and YZ restorations before fusion.
    tile_shape : tuple of int, optional
        Tiles ``(z, y, x)`` of the upsampled stack (context included), cropped and stitched
        with a halo of the model's receptive radius on every axis (:mod:`lucyd.tiling`).
        Default: from ``max_memory``, else the whole stack.
    cluster : None, str or executor
        Where the tiles run (``local:N``, ``tcp://HOST:PORT``, ``slurm``; see
        :func:`lucyd.tiling.executors.get_executor`); the same result everywhere.
    max_memory : int or str, optional
        Memory of one tile's prediction (per worker); sets the tile shape.
    progress : bool
        Whole-job progress over tiles.
    out : array-like, optional
        Destination of shape ``(round(nz · z_factor), y, x)`` (``(3, ...)`` with
        ``return_views``), e.g. from :func:`lucyd.io.open_writer`: written tile by tile and
        returned.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        float32 ``(round(nz · z_factor), y, x)`` (and the two views), or ``out``.
    """

    arr = _check_lazy_stack(stack)
    f = _check_factor(z_factor)
    if fuse not in FUSIONS:
        raise InputError(f"fuse: unknown {fuse!r}; choose one of {', '.join(FUSIONS)}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if isinstance(model, (str, Path)):
        model = load_model(model)
    if model.ndim != 2:
        raise InputError(f"model: isotropic restoration needs a 2D model, got a {model.ndim}D one")
    up = UpsampledZ(arr, f)  # each tile's planes, never the whole upsampled stack
    lo, hi = model.input_range(up)
    task = IsotropicTask(model, float(lo), float(hi - lo) if hi > lo else 1.0, fuse, device,
                         int(batch_size), return_views)
    if tile_shape is not None:
        tile = _as_tuple(tile_shape, 3, "tile_shape")
    elif max_memory is not None:
        tile = _isotropic_tile(model, up.shape, _bytes(max_memory), int(batch_size))
    else:
        tile = up.shape
    plan = plan_partition(up.shape, tile, _isotropic_halo(model), multiple=model.size_multiple)
    res = run_tiles(plan, task, up, out, channels=3 if return_views else None, executor=cluster,
                    progress=progress, desc="isotropic tiles", max_memory=_bytes(max_memory))
    if out is not None:
        return out
    return (res[0], res[1], res[2]) if return_views else res


#: bytes per voxel of one lateral training plane: the plane and its transpose as targets, their
#: degraded copies, and the degradation's and the pair files' working copies (float32)
TRAINING_BYTES_PER_VOXEL = 32


def training_planes_for_budget(shape, budget: int, max_slices: int | None = None) -> int:
    """Lateral planes the training of :func:`isotropic_restore` may hold within ``budget`` bytes
    (at most ``max_slices``); a one-line :class:`InputError` when not even 2 planes fit."""
    per_plane = TRAINING_BYTES_PER_VOXEL * int(shape[1]) * int(shape[2])
    planes = int(budget // per_plane)
    if planes < 2:
        raise InputError(
            f"max_memory: {budget / 1e6:.0f} MB holds fewer than 2 training planes of "
            f"{shape[1]} x {shape[2]} voxels (isotropic training needs about "
            f"{2 * per_plane / 1e6:.0f} MB)"
        )
    return planes if max_slices is None else min(planes, int(max_slices))


def isotropic_restore(stack, z_factor: float, *, voxel_size=None, axial_psf=None,
                      axial_sigma: float | None = None, network: str = "care",
                      net_kwargs: dict | None = None, steps: int = 2000,
                      patch: int | tuple[int, int] | None = None, batch: int | None = None,
                      lr: float | None = None, photons: float | None = None,
                      max_slices: int | None = None, fuse: str = "geometric", seed: int = 0,
                      device: str = "auto", model_dir: str | Path | None = None,
                      batch_size: int = 8, tile_shape=None, cluster=None,
                      max_memory=None, out=None) -> np.ndarray:
    """Self-supervised isotropic restoration of an anisotropic stack (CARE recipe).

    Trains a 2D network on the stack's own lateral planes degraded to look axial, then restores
    the z-upsampled stack's XZ and YZ slices and fuses them by geometric mean (Weigert et al.,
    Nature Methods 2018; MICCAI 2017). See the module docstring for the four steps.

    Parameters
    ----------
    stack : array_like
        ``(z, y, x)`` stack whose z spacing is ``z_factor`` times its lateral spacing.
    z_factor : float
        Axial / lateral sampling ratio, ≥ 1 (e.g. ``dz / dx``); need not be an integer.
    voxel_size : tuple of 3 float, optional
        ``(dz, dy, dx)`` in µm; used to resample a 3D ``axial_psf``. (The output's voxel size
        is :func:`isotropic_voxel_size`.)
    axial_psf : array_like, optional
        Acquisition PSF (1D axial profile, 2D (z, x) kernel on the lateral grid, or 3D PSF
        sampled like the stack; see :func:`axial_kernel`). Default: a Gaussian along z.
    axial_sigma : float, optional
        Width (lateral px) of the default Gaussian; ``z_factor / 2`` when None.
    network : str
        Registered 2D-capable network (``care`` by default; any of ``lucyd.nets``).
    net_kwargs : dict, optional
        Network keyword arguments (e.g. ``{"first_filters": 16}``).
    steps : int
        Training steps.
    patch : int or (int, int), optional
        Training patch (px); default up to 64, clipped to the slices and the network's size
        multiple.
    batch, lr : optional
        Training batch and learning rate (default: the network's recipe).
    photons : float, optional
        Add camera noise (photons per intensity unit) to the degraded training rows.
    max_slices : int, optional
        Use at most this many (random) lateral planes for training.
    fuse : {"geometric", "mean"}
        Fusion of the two views.
    seed : int
        Seed of the training (and of the plane selection / noise).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    model_dir : str or Path, optional
        Keep the trained 2D model there (an existing folder is replaced); default: a temporary
        folder deleted afterwards.
    batch_size : int
        Slices per forward pass at prediction.
    tile_shape, cluster, max_memory
        Tiles of the prediction and where they run (see :func:`predict_isotropic`). With
        ``max_memory`` the training uses at most ``max_memory / (TRAINING_BYTES_PER_VOXEL · y · x)``
        lateral planes (unless ``max_slices`` says fewer; a budget that holds none is refused).
    out : array-like, optional
        Destination written tile by tile (:func:`predict_isotropic`).

    Out of core: ``stack`` may be lazy (zarr, memmap). Then only the training planes are read
    whole, the upsampled stack is formed tile by tile and, with ``out``, the result is written
    tile by tile: with ``max_memory`` nothing stack-sized is held.

    Returns
    -------
    numpy.ndarray
        float32 ``(round(nz · z_factor), y, x)`` in the input's intensity scale (or ``out``).

    Raises
    ------
    InputError
        Not a 3D stack, ``z_factor < 1``, lateral size too small for the patch or factor, bad
        network or training parameters.
    """

    arr = _check_lazy_stack(stack)
    f = _check_factor(z_factor)
    if fuse not in FUSIONS:
        raise InputError(f"fuse: unknown {fuse!r}; choose one of {', '.join(FUSIONS)}")
    if max_memory is not None:
        max_slices = training_planes_for_budget(arr.shape, _bytes(max_memory), max_slices)
    if voxel_size is not None:

        voxel_size = as_voxel_size(voxel_size, 3)

    m = int(getattr(get_network(network), "size_multiple", 1))
    lateral = min(arr.shape[1], arr.shape[2])
    if patch is None:
        p = max(m, (min(64, lateral) // m) * m)
        patch_t = (p, p)
    else:
        patch_t = (int(patch),) * 2 if np.isscalar(patch) else tuple(int(v) for v in patch)
        if len(patch_t) != 2:
            raise InputError(f"patch: expected 1 or 2 sizes, got {patch!r}")
        if any(v > lateral for v in patch_t):
            raise InputError(f"patch: {patch_t} is larger than the smaller lateral size "
                             f"{lateral} of the stack")
    raws, targets = training_pairs(arr, f, axial_psf=axial_psf, axial_sigma=axial_sigma,
                                   voxel_size=voxel_size, photons=photons,
                                   max_slices=max_slices, seed=seed, device=device)
    work = Path(tempfile.mkdtemp(prefix="lucyd_isotropic_"))
    try:
        data = work / "data"
        for sub in ("raw", "gt"):
            (data / sub).mkdir(parents=True)
        width = max(4, len(str(len(raws))))
        meta = ImageMetadata("YX", None)
        for i, (r, t) in enumerate(zip(raws, targets, strict=True)):
            write_image(data / "raw" / f"{i:0{width}d}.npy", r, meta)
            write_image(data / "gt" / f"{i:0{width}d}.npy", t, meta)
        del raws, targets
        config = TrainConfig.build(
            model=network, net_kwargs=dict(net_kwargs or {}), ndim=2, patch=patch_t,
            steps=int(steps), batch=batch, lr=lr, augment=False, seed=int(seed), device=device,
            val_interval=max(1, min(200, int(steps))))
        out_model = Path(model_dir) if model_dir is not None else work / "model"
        train(config, data, out_model, overwrite=True)
        model = load_model(out_model)
        return predict_isotropic(model, arr, f, fuse=fuse, device=device,
                                 batch_size=batch_size, tile_shape=tile_shape, cluster=cluster,
                                 max_memory=max_memory, out=out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = [
    "FUSIONS",
    "axial_kernel",
    "degrade_lateral",
    "isotropic_restore",
    "isotropic_voxel_size",
    "predict_isotropic",
    "training_pairs",
    "training_planes_for_budget",
    "upsample_z",
    "upsample_z_shape",
]
