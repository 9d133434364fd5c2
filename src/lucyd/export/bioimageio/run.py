"""Running bioimage.io packages on image files, and bioimageio.core's package test.

:func:`predict_package_file` restores an image file with a package:

* **lucyd's own packages** (``config.lucyd`` in the description) load back as the model they were
  exported from (:func:`~lucyd.export.bioimageio.package.load_lucyd_package`) and run through
  :func:`lucyd.train.predict_file`: tiled, out of core, in the input's intensity units — the
  same restoration as the model folder gives;
* **other packages** run through bioimageio.core's prediction pipeline (the package's own
  pre- and post-processing, padding to its valid sizes) on the whole image; the output is the
  package's first output tensor, in the units the package defines.

Either way the output file carries the input's voxel size (scaled by the ratio of the output and
input axes' ``scale`` when a package resamples).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from lucyd.errors import FileFormatError, InputError, LucydError, LucydWarning
from lucyd.export.bioimageio.export import require_bioimageio
from lucyd.export.bioimageio.package import PackageFiles, load_lucyd_package, lucyd_entry
from lucyd.io import ImageMetadata, read_image, read_metadata, write_image
from lucyd.train import predict_file
from lucyd.validation import voxel_size_mismatch

#: spatial axis ids of lucyd images, by dimensionality
_SPATIAL = {2: ("y", "x"), 3: ("z", "y", "x")}


def predict_package_file(
    package: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    tile_shape=None,
    overlap=None,
    device: str = "auto",
    progress: bool = True,
    cluster=None,
    max_memory=None,
) -> dict[str, Path]:
    """Restore an image file with a bioimage.io package into float32 file(s).

    Parameters
    ----------
    package : str or Path
        A package zip, its unpacked folder, or its ``rdf.yaml``.
    input_path, output_path : str or Path
        Input image and output file (format from the extension).
    tile_shape, overlap : optional
        Tiling of lucyd's packages (:meth:`lucyd.train.RestorationModel.predict`); other
        packages run on the whole image and refuse a tile shape.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    progress : bool
        Progress bar over tiles (lucyd's packages).
    cluster, max_memory : optional
        Executor of the tiles and memory budget of one tile (lucyd's packages, as
        :meth:`lucyd.train.RestorationModel.predict`); other packages refuse them.

    Returns
    -------
    dict of str to Path
        ``{"restored": output_path}``, plus one file per further output channel of another
        tool's package (``OUTPUT_<channel>.EXT``).

    Raises
    ------
    InputError
        An image the package cannot take (dimensionality, channels), a tile shape for another
        tool's package, bioimageio.core missing for one.
    FileFormatError
        Not a package, or a broken one.
    """
    with PackageFiles(package) as files:
        ours = lucyd_entry(files.rdf) is not None
    if ours:
        model = load_lucyd_package(package)
        _warn_voxel_mismatch(model, package, input_path)
        out = predict_file(model, input_path, output_path, tile_shape=tile_shape,
                           overlap=overlap, device=device, progress=progress, cluster=cluster,
                           max_memory=max_memory)
        return {"restored": Path(out)}
    given = [name for name, value in (("--tile", tile_shape), ("--overlap", overlap),
                                      ("--cluster", cluster), ("--max-memory", max_memory))
             if value is not None]
    if given:
        raise InputError(
            f"{'/'.join(given)}: packages from other tools run on the whole image through "
            "bioimageio.core, in this process"
        )
    return predict_with_bioimageio_core(package, input_path, output_path, device=device)


def _warn_voxel_mismatch(model, package, input_path) -> None:
    """Warn (:class:`LucydWarning`) when the image's voxel size differs from the training data's."""
    mismatch = voxel_size_mismatch(
        model.voxel_size, read_metadata(input_path).voxel_size,
        expected_name=f"the model's training data ({package})",
        actual_name=f"the image ({input_path})",
    )
    if mismatch:
        warnings.warn(mismatch, LucydWarning, stacklevel=3)


def _axis_type(axis) -> str:
    return str(getattr(axis, "type", ""))


def predict_with_bioimageio_core(
    package: str | Path, input_path: str | Path, output_path: str | Path, *, device: str = "auto"
) -> dict[str, Path]:
    """Restore an image file with any bioimage.io model package through bioimageio.core.

    The image (y, x) or (z, y, x) becomes the package's single input tensor by axis id, with
    one channel and batch 1 — or, for a 2D package and a 3D image, its z planes as the batch
    (each plane restored on its own). bioimageio.core applies the package's preprocessing, pads
    to its valid sizes, runs its weights (the first format it supports) and its
    postprocessing. The first output tensor is written: channel 0 to ``output_path``, channel
    ``k`` to ``OUTPUT_<channel name>.EXT``; voxel sizes are the input's times the ratio of the
    output and input axis scales.

    Raises
    ------
    InputError
        Several or no inputs, time or index axes, more than one input channel, spatial axes
        that do not match the image.
    """
    require_bioimageio("running another tool's bioimage.io package")
    try:
        from bioimageio.core import predict  # optional extra (lucyd[bioimageio])
        from bioimageio.core.tensor import Tensor  # optional extra (lucyd[bioimageio])
        from bioimageio.spec.model import v0_5  # optional extra (lucyd[bioimageio])
    except ImportError:
        raise InputError(
            "packages from other tools run through bioimageio.core; "
            "install it: pip install 'lucyd[bioimageio]'"
        ) from None

    descr = _load_description(package)
    if not isinstance(descr, v0_5.ModelDescr):
        raise InputError(f"{package}: bioimage.io model spec 0.5 packages only "
                         f"(this one is format {getattr(descr, 'format_version', '?')})")
    inputs = [t for t in descr.inputs if not t.optional]
    if len(inputs) != 1:
        raise InputError(
            f"{package}: lucyd predict runs packages with one input tensor "
            f"(this one has {len(inputs)})"
        )
    spec_in, spec_out = inputs[0], descr.outputs[0]
    image, meta = read_image(input_path)
    image = np.asarray(image, dtype=np.float32)
    spatial = _SPATIAL[image.ndim]
    axes = list(spec_in.axes)
    kinds = {str(a.id): _axis_type(a) for a in axes}
    space = [aid for aid, kind in kinds.items() if kind == "space"]
    for aid, kind in kinds.items():
        if kind not in ("batch", "channel", "space"):
            raise InputError(f"{package}: its input has a {kind} axis {aid!r}; lucyd gives "
                             "images with batch, channel and space axes only")
    planes = image.ndim == 3 and sorted(space) == ["x", "y"] and "batch" in kinds.values()
    image_axes = ("batch", "y", "x") if planes else spatial
    if sorted(space) != sorted(image_axes[1:] if planes else image_axes):
        raise InputError(
            f"{package}: the package takes images with axes {', '.join(space)}; "
            f"{input_path} is {image.ndim}D ({', '.join(spatial)})"
        )
    for axis in axes:
        if _axis_type(axis) == "channel" and len(axis.channel_names) != 1:
            raise InputError(
                f"{package}: the package takes {len(axis.channel_names)} input channels; "
                "lucyd reads single-channel images"
            )
    # the image in the package's axis order, with singleton batch/channel axes added
    src = list(image_axes)
    dims, order = [], []
    for axis in axes:
        aid, kind = str(axis.id), _axis_type(axis)
        dims.append(aid)
        if kind == "space":
            order.append(src.index(aid))
        elif kind == "batch" and planes:
            order.append(0)
    data = np.transpose(image, order)
    for i, axis in enumerate(axes):
        kind = _axis_type(axis)
        if kind == "channel" or (kind == "batch" and not planes):
            data = np.expand_dims(data, i)
    try:
        sample = predict(model=descr, inputs={spec_in.id: Tensor(data, dims=tuple(dims))})
    except Exception as exc:  # noqa: BLE001 - a backend, weights or processing failure
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise LucydError(
            f"{package}: bioimageio.core could not run the package "
            f"({type(exc).__name__}{': ' + first if first else ''})"
        ) from None
    result = sample.members[spec_out.id]
    out_dims = [str(d) for d in result.dims]
    arr = np.asarray(result.data, dtype=np.float32)
    out_kinds = {str(a.id): _axis_type(a) for a in spec_out.axes}
    channel_axis = next((a for a in spec_out.axes if _axis_type(a) == "channel"), None)
    channels = [str(c) for c in channel_axis.channel_names] if channel_axis else ["restored"]
    if channel_axis is None:
        arr, out_dims = arr[None], ["__channel__", *out_dims]
    channel_id = str(channel_axis.id) if channel_axis else "__channel__"
    out_batch = next((aid for aid, kind in out_kinds.items() if kind == "batch"), None)
    wanted = [out_batch if a == "batch" else a for a in image_axes]
    if out_batch is not None and not planes:
        arr = np.take(arr, 0, axis=out_dims.index(out_batch))
        out_dims.remove(out_batch)
    if sorted(out_dims) != sorted([channel_id, *wanted]):
        raise InputError(
            f"{package}: its output axes ({', '.join(out_dims)}) do not match the image's "
            f"({', '.join(spatial)})"
        )
    arr = np.transpose(arr, [out_dims.index(d) for d in [channel_id, *wanted]])
    in_scale = {str(a.id): float(a.scale) for a in axes if _axis_type(a) == "space"}
    out_scale = {str(a.id): float(a.scale) for a in spec_out.axes if _axis_type(a) == "space"}
    vs = meta.voxel_size
    if vs is not None:
        vs = tuple(
            v * out_scale.get(a, 1.0) / in_scale.get(a, 1.0)
            for v, a in zip(vs, spatial, strict=True)
        )
    out_meta = ImageMetadata(meta.axes, vs, {})
    output_path = Path(output_path)
    written = {}
    for k, cname in enumerate(channels):
        path = output_path if k == 0 else _channel_path(output_path, cname)
        write_image(path, np.ascontiguousarray(arr[k]), out_meta)
        written["restored" if k == 0 else cname] = path
    return written


def _channel_path(path: Path, channel: str) -> Path:
    """``OUTPUT_<channel>.EXT`` beside ``OUTPUT.EXT`` (double suffixes such as .ome.tif kept)."""
    name = path.name
    stem, dot, ext = name.partition(".")
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", channel)
    return path.with_name(f"{stem}_{safe}{dot}{ext}")


def _load_description(package):
    """The package's description (bioimageio.spec), or a one-line :class:`FileFormatError`."""
    from bioimageio.spec import InvalidDescr, load_model_description  # optional extra (lucyd[bioimageio])

    try:
        descr = load_model_description(str(package))
    except Exception as exc:  # noqa: BLE001 - spec errors arrive as various exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileFormatError(f"{package}: not a valid bioimage.io model package ({first})") \
            from None
    if isinstance(descr, InvalidDescr):
        raise FileFormatError(f"{package}: not a valid bioimage.io model description")
    return descr


def bioimageio_test(package: str | Path, *, device: str | None = None):
    """Run bioimageio.core's test of a package (what ``bioimageio test PACKAGE`` runs).

    Validates the description (format and files, hashes), reproduces every weight format's test
    outputs from the test inputs within the package's tolerance (default rel. and abs. 1e-3)
    and runs inference at the parameterised sizes. Nothing is downloaded for a local package.

    Returns
    -------
    bioimageio.spec.ValidationSummary
        ``.status`` is ``"passed"`` or ``"failed"``; ``.format()`` the report.
    """
    require_bioimageio("bioimage.io testing")
    try:
        from bioimageio.core import test_model  # optional extra (lucyd[bioimageio])
    except ImportError:
        raise InputError("bioimage.io testing needs bioimageio.core; "
                         "install it: pip install 'lucyd[bioimageio]'") from None
    return test_model(str(package), devices=None if device is None else [device])
