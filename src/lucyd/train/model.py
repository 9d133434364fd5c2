"""Model folders, loading, and (tiled, out-of-core) prediction.

A model folder written by :func:`lucyd.train.train` holds::

    config.json   the resolved TrainConfig (JobConfig JSON with the lucyd version)
    model.json    format + version, lucyd version, network name/ndim/kwargs/parameter count/
                  receptive radius, normalisation, voxel size of the training data, provenance
                  (data folder, its dataset.json, split), training summary (best step, metrics)
    best.pt       weights with the lowest validation loss (torch state dict in a dict)
    last.pt       the latest full training state (for resume)
    log.jsonl     one JSON record per logging interval / validation
    loss.png      training and validation loss curves

``model.json`` is the :class:`~lucyd.train.card.ModelCard` (also the training status: a model
whose training did not finish loads with an :class:`IncompleteModelWarning`).

Prediction (:meth:`RestorationModel.predict`) normalises the input with the percentiles of the
*whole* input, ``x = (v − p_lo) / (p_hi − p_lo)`` with the model's training percentiles (RLN:
0.01 and 99.5; Li et al., Nature Methods 2022; :class:`lucyd.normalization.Normalizer`), runs
the network and maps the result back to the input's intensity units with the flux of the
training targets, ``out · (p_hi − p_lo) · r + p_lo``, ``r`` the training pairs' ratio of target
to input percentile range (a network trained towards sharper targets that keep the raw flux
gives correspondingly brighter peaks, not a dimmed copy squeezed into the input's range).

Large inputs are processed in tiles through the one tiling engine (:mod:`lucyd.tiling`:
:func:`~lucyd.tiling.tasks.plan_for_model` → :class:`~lucyd.tiling.tasks.NetworkTask` →
:func:`~lucyd.tiling.run_tiles`): crop and stitch, each tile read with a context margin of at
least the network's receptive radius that is computed and discarded, tile origins on the
network's size multiple (RLN's 2× pooling grid), so tiled and whole-image predictions agree to
float32 round-off, and every executor (serial, local processes, a dask cluster) gives the same
result bit for bit.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lucyd.deconv.config import parse_memory
from lucyd.errors import InputError
from lucyd.nets.layers import receptive_field_probe
from lucyd.normalization import Normalizer, percentile_range
from lucyd.train.card import ModelCard
from lucyd.validation import check_finite


class IncompleteModelWarning(UserWarning):
    """A model whose training did not finish (model card status ``running`` or ``interrupted``)."""

#: voxels per tile used by :func:`predict_file` when no tile shape is given (~64×256×256)
DEFAULT_TILE_VOXELS = 64 * 256 * 256


def receptive_radius(net: nn.Module, ndim: int) -> tuple[int, ...]:
    """Receptive-field half-width of ``net`` per axis (voxels).

    Uses the class attribute ``receptive_radius`` (int or tuple) when the network declares
    one (RLN: 18, from its architecture and checked by a gradient probe), else half the full
    extent given by a ``receptive_field`` attribute/property (CARE, RCAN, DDN), otherwise measures it
    with :func:`lucyd.nets.layers.receptive_field_probe` on a 48-voxel (3D) / 128-pixel (2D)
    probe; a network with global operations reports the whole probe, i.e. its context is
    capped at that size.
    """
    declared = getattr(type(net), "receptive_radius", None)
    if declared is not None:
        r = (int(declared),) * ndim if np.isscalar(declared) else tuple(int(v) for v in declared)
        return r
    extent = getattr(net, "receptive_field", None)  # full extent (other lucyd networks)
    if extent is not None and not callable(extent):
        ext = (int(extent),) * ndim if np.isscalar(extent) else tuple(int(v) for v in extent)
        return tuple(int(math.ceil((e - 1) / 2)) for e in ext)
    size = 48 if ndim == 3 else 128
    m = int(getattr(net, "size_multiple", 1))
    size = int(math.ceil(size / m) * m)
    return receptive_field_probe(net, ndim, size)


def _round_up(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


def default_halo(radius: tuple[int, ...], multiple: int) -> tuple[int, ...]:
    """Context discarded around each tile: the receptive radius rounded up to the size multiple."""
    return tuple(_round_up(r, multiple) for r in radius)


class RestorationModel:
    """A trained network with its normalisation, ready to restore images.

    Obtain one with :func:`load_model`. Attributes: ``name`` (network), ``ndim``, ``net``
    (eval-mode ``nn.Module``), ``percentiles`` (p_lo, p_hi), ``output_ratio`` (target-to-input
    scale ratio of the training pairs), ``voxel_size`` of the training data,
    ``receptive_radius``, ``card`` (:class:`~lucyd.train.card.ModelCard`), ``info`` (the card as
    a dictionary, i.e. model.json), ``path``, ``complete`` (training finished).
    """

    def __init__(self, net: nn.Module, info: dict | ModelCard, path: Path | None = None):
        self.net = net.eval()
        self.card = info if isinstance(info, ModelCard) else ModelCard.from_dict(info, path or "")
        self.info = self.card.to_dict()
        self.path = path
        self.name = self.card.network.name
        self.ndim = int(self.card.network.ndim)
        self.size_multiple = int(getattr(net, "size_multiple", 1))
        self.percentiles = tuple(float(p) for p in self.card.normalization.percentiles)
        self.output_ratio = self.card.normalization.output_ratio()
        vs = self.card.voxel_size
        self.voxel_size = tuple(vs) if vs else None
        rr = self.card.network.receptive_radius
        self.receptive_radius = (
            tuple(int(v) for v in rr) if rr else receptive_radius(net, self.ndim)
        )
        self._warned = False

    @property
    def complete(self) -> bool:
        """True when the model's training finished (see :class:`~lucyd.train.card.ModelCard`)."""
        return self.card.complete

    def warn_if_incomplete(self) -> None:
        """Warn (:class:`IncompleteModelWarning`, once per model) when the training did not finish."""
        if not self.complete and not self._warned:
            self._warned = True
            warnings.warn(
                self.card.incomplete_message(self.path), IncompleteModelWarning, stacklevel=3
            )

    def __repr__(self) -> str:
        return f"RestorationModel({self.name!r}, ndim={self.ndim}, path={str(self.path)!r})"

    @property
    def halo(self) -> tuple[int, ...]:
        """Context read and discarded around each tile (RLN: 18 per axis)."""
        return default_halo(self.receptive_radius, self.size_multiple)

    # ------------------------------------------------------------------ normalisation
    def input_range(self, array) -> tuple[float, float]:
        """Global ``(p_lo, p_hi)`` of an input (in-memory or lazy) with the model's percentiles.

        :func:`lucyd.normalization.percentile_range`: inputs above 16 M voxels are subsampled
        (every k-th plane along axis 0; lazy inputs are never loaded whole).
        """
        return percentile_range(array, self.percentiles)

    def normalizers(self, array) -> tuple[Normalizer, Normalizer]:
        """Input and output :class:`~lucyd.normalization.Normalizer` for ``array``.

        The input one takes the model's percentiles of ``array`` to 0 and 1; the output one
        maps the network's output back to the input's intensity units with the target's flux:
        ``out · (p_hi − p_lo) · r + p_lo`` with ``r`` the training pairs' target-to-input scale
        ratio (:attr:`output_ratio`).
        """
        norm = Normalizer(*self.input_range(array))
        return norm, norm.rescaled(self.output_ratio)

    # ------------------------------------------------------------------ prediction
    def _check_input(self, array, name: str = "image"):
        shape = tuple(getattr(array, "shape", np.shape(array)))
        if len(shape) != self.ndim:
            how = (
                "restore it plane by plane or train a 3D model (lucyd train --ndim 3 on 3D data)"
                if self.ndim == 2
                else "train a 2D model (lucyd train --ndim 2)"
            )
            raise InputError(
                f"{name}: the model {self.name!r} restores {self.ndim}D images but the "
                f"input is {len(shape)}D with shape {shape}; {how}"
            )
        if any(s < 1 for s in shape):
            raise InputError(f"{name}: has an empty axis, shape {shape}")
        return shape

    def _run_region(
        self,
        array,
        region: tuple[slice, ...],
        shape,
        norms: tuple[Normalizer, Normalizer],
        device: torch.device,
    ) -> np.ndarray:
        """Restore ``array[region]`` in the input's units (all channels, ``(C, *region)``).

        The region is widened to the size multiple (down at the start, up at the end; beyond
        the image end the input is mirrored), normalised, passed through the network, mapped
        back (the output normaliser's inverse for channel 0, ``· scale`` for further channels)
        and cropped.
        """
        m = self.size_multiple
        wide = tuple(slice((s.start // m) * m, _round_up(s.stop, m)) for s in region)
        inside = tuple(slice(w.start, min(w.stop, n)) for w, n in zip(wide, shape, strict=True))
        block = np.asarray(array[inside], dtype=np.float32)
        pad = [(0, w.stop - i.stop) for w, i in zip(wide, inside, strict=True)]
        if any(p[1] for p in pad):
            block = np.pad(block, pad, mode="symmetric")
        norm_in, norm_out = norms
        block = norm_in.apply(block)
        with torch.inference_mode():
            out = self.net(torch.from_numpy(block[None, None]).to(device))
        out = out[0].float().cpu().numpy()
        out[1:] *= np.float32(norm_out.scale)
        out[0] = norm_out.invert(out[0])
        crop = tuple(
            slice(s.start - w.start, s.stop - w.start) for s, w in zip(region, wide, strict=True)
        )
        return out[(slice(None),) + crop]

    @property
    def output_channels(self) -> int:
        """Number of output channels of the network (probed once on a small zero block)."""
        if getattr(self, "_channels", None) is None:
            m = self.size_multiple
            side = _round_up(8, m)
            param = next(self.net.parameters(), None)
            dev = param.device if param is not None else torch.device("cpu")
            with torch.inference_mode():
                probe = self.net(torch.zeros((1, 1, *(side,) * self.ndim), device=dev))
            self._channels = int(probe.shape[1])
        return self._channels

    def tile_shape_for(self, shape, tile_shape=None, max_memory=None, members: int = 1):
        """The tile shape :meth:`predict` uses: ``tile_shape``, else one that fits ``max_memory``
        (:func:`lucyd.tiling.tasks.tile_shape_for_network`), else the whole image."""
        shape = tuple(int(n) for n in shape)
        if tile_shape is not None:
            return _as_tuple(tile_shape, self.ndim, "tile_shape")
        if max_memory is not None:
            from lucyd.tiling.tasks import tile_shape_for_network  # tiling.tasks imports this module

            return tile_shape_for_network(self, shape, _bytes(max_memory), members)
        return shape

    def _predict_plane(self, array, *, tile_shape, out, all_channels, **kwargs):
        """A 2D image through a 3D model: a single-plane volume (z padded to the size multiple).

        The plane is mirrored along z up to the network's size multiple (RLN: 2), restored as a
        volume, and the restored plane returned (see :meth:`predict`).
        """
        arr = np.asarray(array)
        warnings.warn(
            f"the 3D model {self.name!r} restores the 2D image {arr.shape} as a single-plane "
            "volume (no z context); for 2D data a 2D model (lucyd train --ndim 2) is better",
            UserWarning,
            stacklevel=3,
        )
        tile = None if tile_shape is None else (1, *_as_tuple(tile_shape, 2, "tile_shape"))
        res = self.predict(arr[None], tile_shape=tile, all_channels=all_channels, **kwargs)
        res = res[:, 0] if all_channels else res[0]
        if out is None:
            return res
        out[...] = res
        return out

    def predict(
        self,
        array,
        *,
        tile_shape=None,
        overlap=None,
        device: str = "auto",
        batch_size: int = 1,
        out=None,
        all_channels: bool = False,
        progress: bool = True,
        cluster=None,
        max_memory=None,
    ):
        """Restore an image, whole or in tiles, in the input's intensity scale (float32).

        Parameters
        ----------
        array : array_like
            (y, x) or (z, y, x) image matching the model's dimensionality; a numpy array, or
            any sliceable array-like (zarr, memmap) that is then read tile by tile.
        tile_shape : int or tuple of int, optional
            Largest block the network sees, context included. None: from ``max_memory``, else
            the whole image at once. Tiles are cropped and stitched (:mod:`lucyd.tiling`):
            each reads a halo of the network's receptive radius rounded up to its size multiple
            (RLN: 18) that is computed and discarded, so tiled and whole-image results agree
            to float32 round-off; tiles start on the size multiple and, where they are large
            enough, on ``out``'s Zarr chunks.
        overlap : ignored
            Accepted for compatibility: crop-and-stitch with the discarded halo needs no
            blending of neighbouring tiles.
        device : str
            ``auto``, ``cpu`` or ``cuda`` (on a dask cluster of a machine with several GPUs,
            one GPU per worker: :func:`lucyd.tiling.tasks.worker_device`).
        batch_size : int
            Reserved for batched tiles; tiles currently run one at a time.
        out : array-like, optional
            Writable output of the input's shape, ``(C, *shape)`` with ``all_channels`` (e.g.
            from :func:`lucyd.io.open_writer`); every voxel is written once. Returned. A store
            from :func:`lucyd.tiling.open_resumable_zarr` records finished tiles (resume).
        all_channels : bool
            Return every output channel, ``(C, *spatial)``, from one network pass per tile:
            channel 0 the restoration in the input's scale, further channels (e.g. a Laplace
            scale) multiplied by ``p_hi − p_lo``.
        progress : bool
            Progress over tiles (tiles done / total, throughput, time left).
        cluster : None, str or executor
            Where tiles run (:func:`lucyd.tiling.executors.get_executor`): None (this
            process), ``"local:N"``, ``"processes:N"``, ``"tcp://HOST:PORT"``, ``"slurm"``.
            A model loaded from a folder is loaded by each worker; an in-memory one is pickled.
        max_memory : int, float or str, optional
            Memory budget of one tile's prediction (per worker), e.g. ``"2GB"``: sets the
            tile shape when ``tile_shape`` is None.

        Returns
        -------
        numpy.ndarray or array-like
            float32 restoration of the input's shape (``out`` when given).

        Raises
        ------
        InputError
            Wrong dimensionality, non-finite or non-numeric input, tiles too small for the halo.

        Notes
        -----
        Normalisation is global: ``p_lo, p_hi`` are the model's percentiles (RLN: 0.01, 99.5)
        of the whole input (every k-th plane above 16 M voxels), the network sees
        ``(v − p_lo) / (p_hi − p_lo)`` and its output is mapped back as
        ``out · (p_hi − p_lo) · r + p_lo`` with ``r`` = :attr:`output_ratio` (the training
        targets' flux in the input's units). A 2D image given to a 3D model is restored as a
        single-plane volume (with a warning). (Li et al. 2022 normalise per block and re-multiply
        by the block's maximum instead; global normalisation keeps tiles consistent.)
        """
        from lucyd.tiling import run_tiles  # tiling.tasks imports this module: a cycle
        from lucyd.tiling.tasks import NetworkTask, plan_for_model  # (the same cycle)

        self.warn_if_incomplete()
        if self.ndim == 3 and len(getattr(array, "shape", np.shape(array))) == 2:
            return self._predict_plane(
                array, tile_shape=tile_shape, device=device, batch_size=batch_size, out=out,
                all_channels=all_channels, progress=progress, cluster=cluster,
                max_memory=max_memory,
            )
        shape = self._check_input(array)
        if isinstance(array, np.ndarray) or not hasattr(array, "shape"):
            array = np.asarray(array)
            if array.dtype.kind not in "biuf" or array.dtype == bool:
                raise InputError(f"image: expected a numeric array, got dtype {array.dtype}")
            check_finite(array, "image")
        if int(batch_size) < 1:
            raise InputError(f"batch_size: must be >= 1, got {batch_size}")
        tile = self.tile_shape_for(shape, tile_shape, max_memory)
        plan = plan_for_model(self, shape, tile, chunks=_spatial_chunks(out, len(shape)))
        task = NetworkTask.for_model(self, array, device=device, all_channels=all_channels)
        result = run_tiles(
            plan,
            task,
            array,
            out,
            executor=cluster,
            channels=self.output_channels if all_channels else None,
            progress=progress,
            desc=f"predict {self.name}",
            max_memory=_bytes(max_memory),
        )
        return result if out is not None else np.ascontiguousarray(result, dtype=np.float32)


def _bytes(max_memory):
    return None if max_memory is None else parse_memory(max_memory)


def _spatial_chunks(out, ndim: int):
    """The Zarr chunks of ``out`` over its spatial axes (None when it has none)."""
    chunks = getattr(out, "chunks", None)
    if chunks is None or len(chunks) < ndim or not all(isinstance(c, int) for c in chunks):
        return None
    return tuple(chunks[-ndim:])


def _as_tuple(value, ndim: int, name: str, allow_zero: bool = False) -> tuple[int, ...]:
    vals = np.atleast_1d(np.asarray(value))
    if vals.size == 1:
        vals = np.repeat(vals, ndim)
    if vals.size != ndim or not np.all(np.mod(vals, 1) == 0):
        raise InputError(f"{name}: expected {ndim} integers, got {value!r}")
    vals = tuple(int(v) for v in vals)
    if any(v < (0 if allow_zero else 1) for v in vals):
        kind = ">= 0" if allow_zero else "positive"
        raise InputError(f"{name}: sizes must be {kind}, got {value!r}")
    return vals


def default_tile_shape(shape: tuple[int, ...], multiple: int = 1) -> tuple[int, ...]:
    """About :data:`DEFAULT_TILE_VOXELS` voxels: (64, 256, 256) in 3D, 4096² in 2D, clipped."""
    base = (64, 256, 256) if len(shape) == 3 else (4096, 4096)
    return tuple(_round_up(min(b, n), multiple) for b, n in zip(base, shape, strict=True))
