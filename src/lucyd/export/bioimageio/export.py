"""Writing a trained lucyd model as a bioimage.io model package (spec 0.5).

:func:`export_bioimageio` turns a model folder (``lucyd train``) into a zip that bioimageio.core
(``bioimageio test`` / ``predict``), and through it the BioImage Model Zoo's consumer tools, can
run. What the package says, and why:

* **weights** — ``torchscript`` (the network with its batch norms folded, no lucyd needed to
  run it) and ``pytorch_state_dict`` (the trained state dict with the architecture named as
  ``lucyd.nets.<module>.<Class>`` + the model card's keyword arguments, so lucyd rebuilds it);
* **axes** — ``batch, channel, [z,] y, x`` with every spatial size ``min + n·step``: the step
  is the network's size multiple (RLN: 2, its 2× pooling grid), ``min`` the smallest multiple
  above twice the halo; spatial scales are the training data's voxel size in micrometres;
* **halo** — the output's halo is the network's receptive radius on the size multiple (RLN: 18),
  the context a tiling consumer must discard (:attr:`lucyd.train.RestorationModel.halo`);
* **preprocessing** — ``scale_range`` with the model's percentiles (RLN: 0.01 / 99.5) over the
  whole sample: :class:`lucyd.normalization.Normalizer`'s ``(v − p_lo) / (p_hi − p_lo)``
  (bioimage.io adds ``eps = 1e-6`` to the denominator);
* **output units** — the spec's post-processing cannot multiply by a statistic of the input
  (its ``scale_linear`` takes fixed numbers; ``scale_mean_variance`` matches mean and standard
  deviation, not lucyd's percentile map), so the package's output is *normalised*: in units of
  the input's own percentile range, ``(restored − p_lo) / (p_hi − p_lo)`` with ``p_lo, p_hi``
  the input's percentiles. A ``scale_linear`` with the training pairs' target-to-input scale
  ratio ``r`` makes that exact for lucyd's map ``out · (p_hi − p_lo) · r + p_lo``; multiply by
  ``p_hi − p_lo`` and add ``p_lo`` for the input's units (``lucyd predict PACKAGE.zip`` does);
* **test tensors** — a crop of a sample image (default: the training data's validation image)
  and lucyd's own prediction of it (:meth:`RestorationModel.predict`) in those units, which
  ``bioimageio test`` reproduces through its own pre- and post-processing;
* **record** — the model card ``model.json`` (network, normalisation, provenance, training
  status and scores), ``config.json`` and the loss curve attached; the network paper cited by
  its DOI (:attr:`lucyd.nets.NetworkSpec.doi`); a cover (input | restoration) and a README.
"""

from __future__ import annotations

import getpass
import importlib
import math
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lucyd.errors import InputError, LucydError

#: license of the exported weights unless another SPDX identifier is given
DEFAULT_LICENSE = "CC-BY-4.0"
#: largest test tensor (per axis) cut from the sample: small packages, quick tests
TEST_EXTENT = {2: (128, 128), 3: (48, 64, 64)}
#: spatial axis names of 2D / 3D lucyd images
SPATIAL_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}
#: the files of a package, by role
FILES = {
    "rdf": "rdf.yaml",
    "state_dict": "weights.pt",
    "torchscript": "weights_torchscript.pt",
    "test_input": "test_input.npy",
    "test_output": "test_output.npy",
    "sample_input": "sample_input.tif",
    "sample_output": "sample_output.tif",
    "cover": "cover.png",
    "readme": "README.md",
    "card": "model.json",
    "train_config": "config.json",
    "loss_curve": "loss.png",
}
#: relative and absolute tolerance of the TorchScript check against the network itself
SCRIPT_TOLERANCE = 1e-4

_EXTRA_HINT = "install the bioimage.io extra: pip install 'lucyd[bioimageio]'"


def require_bioimageio(what: str = "this"):
    """Import ``bioimageio.spec`` or raise a one-line :class:`InputError` saying how to get it."""
    try:
        import bioimageio.spec as spec
    except ImportError:
        raise InputError(f"{what} needs bioimageio.spec; {_EXTRA_HINT}") from None
    return spec


# ---------------------------------------------------------------------- geometry


def _round_up(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


def input_geometry(model) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """``(min_shape, step, halo)`` of a model's package input.

    ``step`` is the network's size multiple, ``halo`` its context (receptive radius on the
    multiple), ``min_shape`` per axis the smallest multiple of the step that leaves at least one
    voxel once the halo is cut from both sides (the spec's condition ``min − 2·halo ≥ 1``).
    """
    step = int(model.size_multiple)
    halo = tuple(int(h) for h in model.halo)
    min_shape = tuple(max(step, _round_up(2 * h + 1, step)) for h in halo)
    return min_shape, step, halo


#: largest axis size for which a micrometre scale must survive bioimage.io's size arithmetic
_SCALE_CHECK_SIZES = 1 << 14


def axis_scales(voxel_size) -> tuple[str | None, tuple[float, ...]]:
    """``(unit, scales)`` of the spatial axes for a voxel size in micrometres.

    bioimage.io derives an output size as ``size · scale_in / scale_out`` in floating point and
    compares or truncates it (spec 0.5.12), so ``48 · 0.1 / 0.1 = 48.00000000000001`` breaks a
    package. Whole nanometres (0.13 µm → 130 nm) keep that arithmetic exact, so they are used
    when every voxel size is a whole number of nanometres; otherwise micrometres when the
    arithmetic is exact for every size up to 16384; otherwise no physical scale (the voxel size
    is then in the README and ``model.json`` only). No voxel size: no scale.
    """
    if not voxel_size:
        return None, ()
    nm = [round(float(v) * 1000.0, 3) for v in voxel_size]
    if all(v > 0 and v == int(v) for v in nm):
        return "nanometer", tuple(float(int(v)) for v in nm)
    sizes = np.arange(1, _SCALE_CHECK_SIZES, dtype=np.float64)
    if all(np.all(sizes * float(v) / float(v) == sizes) for v in voxel_size):
        return "micrometer", tuple(float(v) for v in voxel_size)
    return None, ()


def tensor_test_shape(sample_shape, min_shape, step, extent) -> tuple[int, ...]:
    """Largest valid size ``min + n·step`` per axis within the sample and ``extent`` (≥ min)."""
    shape = []
    for n, lo, cap in zip(sample_shape, min_shape, extent, strict=True):
        top = min(int(n), int(cap))
        shape.append(lo + max(0, (top - lo) // step) * step)
    return tuple(shape)


def crop_or_pad(image, shape) -> np.ndarray:
    """The centre ``shape`` of ``image`` as float32, mirror-padded (symmetric) where smaller.

    ``image`` may be lazy (Zarr, a lazily read TIFF): only the centre region is read.
    """
    start = [max(0, (n - s) // 2) for s, n in zip(shape, image.shape, strict=True)]
    region = tuple(slice(a, a + s) for a, s in zip(start, shape, strict=True))
    block = np.asarray(image[region], dtype=np.float32)
    pad = [(0, s - n) for s, n in zip(shape, block.shape, strict=True)]
    return np.pad(block, pad, mode="symmetric") if any(p[1] for p in pad) else block


# ---------------------------------------------------------------------- sample and test tensors


def default_sample(card, model_dir: Path) -> Path:
    """The training data's validation image (else its first raw image) named by the model card."""
    prov = card.provenance or {}
    data_dir = prov.get("data_dir")
    raw = Path(data_dir) / "raw" if data_dir else None
    if raw is None or not raw.is_dir():
        raise InputError(
            f"{model_dir}: its training data ({data_dir or 'not recorded'}) is not here to cut "
            "test tensors from; give a sample image (lucyd export --sample IMAGE)"
        )
    files = sorted(p for p in raw.iterdir() if not p.name.startswith("."))
    wanted = list((prov.get("split") or {}).get("validation") or []) + list(
        prov.get("images") or []
    )
    for name in wanted:
        for p in files:
            if p.name == name or p.name.split(".")[0] == name:
                return p
    if not files:
        raise InputError(f"{raw}: no images; give a sample image (lucyd export --sample IMAGE)")
    return files[0]


def make_test_tensors(model, sample: np.ndarray, *, device: str = "cpu"):
    """Test input ``(1, 1, *spatial)`` and lucyd's prediction ``(1, C, *spatial)`` in package units.

    The prediction is :meth:`RestorationModel.predict` (whole image, all channels) mapped to
    the package's normalised units: channel 0 ``(restored − p_lo) / (p_hi − p_lo)``, further
    channels (scales) ``/ (p_hi − p_lo)``, with the input's percentiles.
    """
    min_shape, step, _ = input_geometry(model)
    shape = tensor_test_shape(sample.shape, min_shape, step, TEST_EXTENT[model.ndim])
    x = np.ascontiguousarray(crop_or_pad(sample, shape))
    if not np.all(np.isfinite(x)):
        raise InputError("sample: the test region holds NaN or Inf values")
    restored = model.predict(x, all_channels=True, device=device, progress=False)
    norm_in, _ = model.normalizers(x)
    y = np.empty_like(restored)
    y[0] = norm_in.apply(restored[0])
    y[1:] = restored[1:] / np.float32(norm_in.scale)
    return x[None, None], y[None].astype(np.float32)


# ---------------------------------------------------------------------- weights


def architecture_source(net, card) -> tuple[str, str, dict]:
    """``(import_from, callable, kwargs)`` that rebuild ``net``: its class by its import path."""
    cls = type(net)
    module, name = cls.__module__, cls.__name__
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        found = None
    if found is not cls:
        raise InputError(
            f"network {card.network.name!r}: its class {module}.{name} cannot be imported by "
            "that name, so a package cannot name its architecture"
        )
    return module, name, {"ndim": int(card.network.ndim), **dict(card.network.kwargs)}


def scripted(net, example, shapes: Sequence[tuple[int, ...]]):
    """TorchScript of ``net`` (``torch.jit.script``, else a trace), checked on every shape.

    The check runs the script and the network on random inputs of each spatial shape (batch
    1, 2, 1, ...); a trace that baked a shape or batch size into its graph fails it.

    Raises
    ------
    LucydError
        The script disagrees with the network on one of the shapes.
    """
    import torch

    net = net.eval()
    with torch.inference_mode(False), torch.no_grad():
        try:
            module = torch.jit.script(net)
            how = "script"
        except Exception:  # noqa: BLE001 - any scripting failure: fall back to tracing
            with warnings.catch_warnings():  # shape checks become constants: checked below
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                module = torch.jit.trace(net, torch.from_numpy(example), check_trace=False)
            how = "trace"
        rng = np.random.default_rng(0)
        for batch, shape in zip((1, 2) * len(shapes), shapes, strict=False):
            x = torch.from_numpy(rng.random((batch, 1, *shape), dtype=np.float32))
            want, got = net(x), module(x)
            if want.shape != got.shape or not torch.allclose(
                got, want, rtol=SCRIPT_TOLERANCE, atol=SCRIPT_TOLERANCE
            ):
                raise LucydError(
                    f"TorchScript ({how}) of the network disagrees with it on an input of "
                    f"shape {tuple(shape)}; the package cannot carry TorchScript weights"
                )
    return module


# ---------------------------------------------------------------------- cover and README


def write_cover(path: Path, test_input: np.ndarray, test_output: np.ndarray) -> None:
    """A 2:1 PNG: the test input (left) beside its restoration (right), central plane.

    Each half is scaled by its own 0.5 / 99.8 percentiles (display only).
    """
    from matplotlib import image as mpimg

    def plane(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float32)
        a = a[a.shape[0] // 2] if a.ndim == 3 else a
        lo, hi = np.percentile(a, [0.5, 99.8])
        return np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1)

    left, right = plane(test_input[0, 0]), plane(test_output[0, 0])
    side = max(left.shape)
    zoom = max(1, 256 // side)

    def square(a: np.ndarray) -> np.ndarray:
        out = np.zeros((side, side), np.float32)
        out[: a.shape[0], : a.shape[1]] = a
        return np.kron(out, np.ones((zoom, zoom), np.float32))

    mpimg.imsave(path, np.concatenate([square(left), square(right)], axis=1), cmap="magma",
                 vmin=0, vmax=1)


def readme_text(card, *, name: str, min_shape, step, halo, ratio: float, cite: list) -> str:
    """The package's documentation (``README.md``): what it does, its units, its validation."""
    p_lo, p_hi = card.normalization.percentiles
    t = card.training
    scores = ", ".join(
        f"{k} {v:.4g}"
        for k, v in (("validation PSNR", t.best_val_psnr), ("validation SSIM", t.best_val_ssim))
        if v is not None
    )
    axes = ", ".join(SPATIAL_AXES[card.network.ndim])
    vs = card.voxel_size
    refs = "\n".join(f"- {c['text']} doi:{c['doi']}" for c in cite)
    return f"""# {name}

Network: {card.network.name.upper()} ({card.network.ndim}D), trained with lucyd
(physics-informed restoration of fluorescence microscopy images) and exported as a bioimage.io
model package (spec 0.5).

## Input
One channel, axes batch, channel, {axes}; spatial sizes `min + n·{step}` with `min` =
{tuple(min_shape)} (the network's size multiple is {step}). The training data's voxel size was
{tuple(vs) if vs else 'not recorded'} µm; other sampling changes what the network sees.
Preprocessing `scale_range` maps the input's own {p_lo} and {p_hi} percentiles (over the whole
image) to 0 and 1, as lucyd does.

## Output and its units
The restoration in units of the **input's normalised range**: 0 is the input's {p_lo}
percentile `p_lo`, 1 its {p_hi} percentile `p_hi`. For the input's intensity scale compute
`p_lo + output · (p_hi − p_lo)` (the bioimage.io spec cannot express a map back through a
statistic of the input; `lucyd predict THIS.zip IN -o OUT` does it, and gives lucyd's own
restoration). The post-processing multiplies by the training pairs' target-to-input scale ratio
{ratio:.6g}, so the output has the training targets' intensity scale relative to the input.
Tiled prediction discards a halo of {halo} voxels per side (the network's receptive radius).
A consumer that mirrors the input by the halo before the `scale_range` preprocessing (as
bioimageio.core's whole-image prediction does) takes the percentiles over the mirrored border
too, and its border voxels see mirrored context: expect small differences from lucyd there.

## Training record
Attached `model.json` (network, normalisation, provenance, status), `config.json` (the
training configuration) and `loss.png`. Status: {t.status}, {t.steps_done} steps{'; ' + scores if scores else ''}.

## Validation
`bioimageio test` reproduces the test output from the test input (lucyd's own prediction of a
crop of a sample image) through this description. Quality on unseen data: compare restorations
of held-out image pairs with `lucyd evaluate` (PSNR, SSIM after percentile normalisation), and
check a restoration against the raw data through the forward model (lucyd's physics self-check).
Restored images must not be used for intensity quantification such as fluorophore counting
(Weigert et al., Nature Methods 2018).

## References
{refs}
"""


# ---------------------------------------------------------------------- the package


def _name(card, model_dir: Path, name: str | None) -> str:
    import re

    if name is None:
        name = f"lucyd {card.network.name.upper()} {card.network.ndim}D {model_dir.name}"
    clean = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name).strip()
    if len(clean) < 5:
        clean = f"lucyd {clean}".strip()
    return clean[:128]


def check_license(license: str) -> str:
    """``license`` when bioimage.io knows it as an SPDX identifier, else a one-line InputError."""
    from bioimageio.spec.model import v0_5 as bio
    from pydantic import ValidationError

    try:
        bio.LicenseId(license)
    except (ValidationError, ValueError):
        raise InputError(
            f"license: {license!r} is not an SPDX license identifier (e.g. CC-BY-4.0, MIT, "
            "BSD-3-Clause)"
        ) from None
    return license


def citations(card, cite) -> list[dict]:
    """``[{text, doi}]``: ``cite`` when given, else the network's paper (its spec's DOI)."""
    if cite:
        out = [{"text": str(t), "doi": str(d)} for t, d in cite]
    else:
        from lucyd.nets import get_spec

        spec = get_spec(card.network.name)
        if not spec.doi:
            raise InputError(
                f"network {spec.name!r} has no DOI in its NetworkSpec; give a citation "
                "(cite=[(text, doi)])"
            )
        out = [{"text": spec.reference or spec.name, "doi": spec.doi}]
    return out


def export_bioimageio(
    model_dir: str | Path,
    output: str | Path,
    *,
    sample=None,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] | None = None,
    license: str = DEFAULT_LICENSE,
    cite: Sequence[tuple[str, str]] | None = None,
    device: str = "cpu",
) -> Path:
    """Write a trained model folder as a bioimage.io model package (zip, spec 0.5).

    Parameters
    ----------
    model_dir : str or Path
        A model folder written by :func:`lucyd.train.train` whose training finished.
    output : str or Path
        The package, ``*.zip`` (written atomically; never over the model or the sample).
    sample : array_like or path, optional
        Image the test tensors are cut from (centre crop, at most 48×64×64 / 128×128, on the
        network's size grid; mirror-padded when smaller). Default: the validation image of the
        training data named by the model card.
    name, description : str, optional
        The package's name (letters, digits, ``_+-()`` and spaces) and one-line description.
    authors : sequence of str, optional
        Author names; default the current user's login name.
    license : str
        SPDX identifier of the weights' license (default CC-BY-4.0).
    cite : sequence of (text, doi), optional
        Citations; default the network's paper (:attr:`lucyd.nets.NetworkSpec.doi`).
    device : str
        Device of the test prediction (``cpu`` keeps test tensors reproducible everywhere).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    InputError
        An incomplete model, a sample of the wrong dimensionality, a bad license or name,
        bioimageio.spec missing (the ``lucyd[bioimageio]`` extra).
    FileFormatError
        An unreadable model folder or sample.

    Notes
    -----
    The package's output is in the input's normalised units (see this module's docstring):
    bioimage.io 0.5 post-processing has no operation that maps back through the input's
    percentiles. ``lucyd predict PACKAGE.zip`` restores in the input's units.
    """
    require_bioimageio("bioimage.io export")
    from lucyd.io import read_image
    from lucyd.io.atomic import atomic_path
    from lucyd.io.outputs import check_output_path
    from lucyd.train import load_model

    model_dir = Path(model_dir)
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise InputError(f"output: a bioimage.io package is a .zip file, got {output.name!r}")
    check_license(license)
    model = load_model(model_dir)
    if not model.complete:
        raise InputError(f"{model.card.incomplete_message(model_dir)} before exporting it")
    card = model.card
    refs = citations(card, cite)
    pkg_name = _name(card, model_dir, name)
    sample_path = None
    if sample is None:
        sample_path = default_sample(card, model_dir)
    elif isinstance(sample, str | Path):
        sample_path = Path(sample)
    check_output_path(output, [model_dir] + ([sample_path] if sample_path else []))
    if sample_path is not None:
        sample = read_image(sample_path, lazy=True)[0]
    elif not hasattr(sample, "shape"):
        sample = np.asarray(sample)
    if len(sample.shape) != model.ndim:
        raise InputError(
            f"sample: the model restores {model.ndim}D images but the sample is "
            f"{len(sample.shape)}D with shape {tuple(sample.shape)}"
        )
    if np.dtype(sample.dtype).kind not in "biuf":
        raise InputError(f"sample: expected a numeric image, got dtype {sample.dtype}")

    min_shape, step, halo = input_geometry(model)
    x, y = make_test_tensors(model, sample, device=device)
    ratio = float(model.output_ratio)
    state = load_model(model_dir, fuse_batch_norm=False).net.state_dict()
    with tempfile.TemporaryDirectory(prefix="lucyd-bioimageio-") as tmp:
        tmp = Path(tmp)
        files = {k: tmp / v for k, v in FILES.items()}
        import torch

        torch.save(state, files["state_dict"])
        shapes = [x.shape[2:], min_shape]
        torch.jit.save(scripted(model.net.cpu(), x, shapes), files["torchscript"])
        np.save(files["test_input"], x)
        np.save(files["test_output"], y)
        import tifffile

        tifffile.imwrite(files["sample_input"], x[0, 0])
        tifffile.imwrite(files["sample_output"], y[0, 0] if y.shape[1] == 1 else y[0])
        write_cover(files["cover"], x, y)
        files["readme"].write_text(
            readme_text(card, name=pkg_name, min_shape=min_shape, step=step, halo=halo,
                        ratio=ratio, cite=refs)
        )
        card.write(files["card"])
        attachments = [files["card"]]
        for role in ("train_config", "loss_curve"):
            src = model_dir / FILES[role]
            if src.is_file():
                shutil.copyfile(src, files[role])
                attachments.append(files[role])
        descr = build_description(
            model, card, files, attachments=attachments, name=pkg_name,
            description=description, authors=authors, license=license, cite=refs,
            min_shape=min_shape, step=step, halo=halo, ratio=ratio,
            n_channels=int(y.shape[1]),
        )
        from bioimageio.spec import save_bioimageio_package

        with atomic_path(output) as part:
            save_bioimageio_package(descr, output_path=part)
    return output


def build_description(
    model, card, files: dict, *, attachments, name, description, authors, license, cite,
    min_shape, step, halo, ratio, n_channels,
):
    """The :class:`bioimageio.spec.model.v0_5.ModelDescr` of an exported model (validated)."""
    import torch
    from bioimageio.spec.model import v0_5 as bio
    from pydantic import ValidationError

    ndim = card.network.ndim
    axes_ids = SPATIAL_AXES[ndim]
    unit, vs = axis_scales(card.voxel_size)
    vs = vs or (1.0,) * ndim
    p_lo, p_hi = (float(p) for p in card.normalization.percentiles)
    input_id = bio.TensorId("raw")
    import_from, callable_name, kwargs = architecture_source(model.net, card)
    torch_version = bio.Version(torch.__version__.split("+")[0])
    channel_names = ["restored"] + [f"scale{i}" for i in range(1, n_channels)]
    gains = [ratio] + [1.0] * (n_channels - 1)
    post = []
    if any(g != 1.0 for g in gains):
        post.append(
            bio.ScaleLinearDescr(
                kwargs=bio.ScaleLinearAlongAxisKwargs(axis=bio.AxisId("channel"), gain=gains)
                if n_channels > 1
                else bio.ScaleLinearKwargs(gain=ratio)
            )
        )
    if description is None:
        description = (
            f"{card.network.name.upper()} {ndim}D restoration trained with lucyd; output in the "
            f"input's normalised units (0 = its p{p_lo:g}, 1 = its p{p_hi:g})"
        )
    try:
        return bio.ModelDescr(
            name=name,
            description=description,
            authors=[bio.Author(name=a) for a in (authors or [_login()])],
            cite=[bio.CiteEntry(text=c["text"], doi=bio.Doi(c["doi"])) for c in cite],
            license=bio.LicenseId(license),
            documentation=bio.FileDescr(source=files["readme"]),
            covers=[bio.FileDescr(source=files["cover"])],
            attachments=[bio.FileDescr(source=p) for p in attachments],
            tags=["lucyd", "restoration", "deconvolution", "fluorescence-light-microscopy",
                  f"{ndim}d", "pytorch", card.network.name],
            inputs=[
                bio.InputTensorDescr(
                    id=input_id,
                    description=f"raw image, one channel ({', '.join(axes_ids)})",
                    axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier("raw")])]
                    + [
                        bio.SpaceInputAxis(
                            id=bio.AxisId(a), size=bio.ParameterizedSize(min=m, step=step),
                            scale=float(s), unit=unit,
                        )
                        for a, m, s in zip(axes_ids, min_shape, vs, strict=True)
                    ],
                    test_tensor=bio.FileDescr(source=files["test_input"]),
                    sample_tensor=bio.FileDescr(source=files["sample_input"]),
                    data=bio.IntervalOrRatioDataDescr(type="float32"),
                    preprocessing=[
                        bio.ScaleRangeDescr(
                            kwargs=bio.ScaleRangeKwargs(
                                axes=[bio.AxisId("channel")] + [bio.AxisId(a) for a in axes_ids],
                                min_percentile=p_lo,
                                max_percentile=p_hi,
                            )
                        )
                    ],
                )
            ],
            outputs=[
                bio.OutputTensorDescr(
                    id=bio.TensorId("restored"),
                    description="restoration in the input's normalised units "
                    "(0 = input p_lo, 1 = input p_hi percentile)",
                    axes=[
                        bio.BatchAxis(),
                        bio.ChannelAxis(channel_names=[bio.Identifier(c) for c in channel_names]),
                    ]
                    + [
                        bio.SpaceOutputAxisWithHalo(
                            id=bio.AxisId(a),
                            size=bio.SizeReference(tensor_id=input_id, axis_id=bio.AxisId(a)),
                            halo=int(h), scale=float(s), unit=unit,
                        )
                        for a, h, s in zip(axes_ids, halo, vs, strict=True)
                    ],
                    test_tensor=bio.FileDescr(source=files["test_output"]),
                    sample_tensor=bio.FileDescr(source=files["sample_output"]),
                    data=bio.IntervalOrRatioDataDescr(type="float32"),
                    postprocessing=post,
                )
            ],
            weights=bio.WeightsDescr(
                pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
                    source=files["state_dict"],
                    architecture=bio.ArchitectureFromLibraryDescr(
                        import_from=import_from, callable=bio.Identifier(callable_name),
                        kwargs=kwargs,
                    ),
                    pytorch_version=torch_version,
                ),
                torchscript=bio.TorchscriptWeightsDescr(
                    source=files["torchscript"], pytorch_version=torch_version,
                    parent="pytorch_state_dict",
                    comment="batch norms folded into the convolutions",
                ),
            ),
            config={
                "lucyd": {
                    "card": FILES["card"],
                    "state_dict": FILES["state_dict"],
                    "train_config": FILES["train_config"],
                    "lucyd_version": card.lucyd_version,
                    "network": card.network.name,
                    "output_units": "input-normalised",
                    "percentiles": [p_lo, p_hi],
                    "target_scale_ratio": ratio,
                }
            },
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(v) for v in err["loc"]) or "model"
        msg = str(err["msg"]).splitlines()[0][:300]
        raise InputError(f"bioimage.io description: {loc}: {msg}") from None


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in this environment
        return "unknown"
