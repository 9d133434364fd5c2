"""The parts of a bioimage.io package that :func:`lucyd.export.bioimageio.export.export_bioimageio`
assembles: constants, input geometry and axis scales, test tensors, the TorchScript trace, cover, README,
license and citations (see :mod:`lucyd.export.bioimageio.export` for what the package says and why)."""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from lucyd.errors import InputError, LucydError
from lucyd.nets import get_spec

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
        import bioimageio.spec as spec  # optional extra (lucyd[bioimageio])
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
    from matplotlib import image as mpimg  # matplotlib: slow to import, only for the cover

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


def check_license(license: str) -> str:
    """``license`` when bioimage.io knows it as an SPDX identifier, else a one-line InputError."""
    from bioimageio.spec.model import v0_5 as bio  # optional extra (lucyd[bioimageio])

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
        spec = get_spec(card.network.name)
        if not spec.doi:
            raise InputError(
                f"network {spec.name!r} has no DOI in its NetworkSpec; give a citation "
                "(cite=[(text, doi)])"
            )
        out = [{"text": spec.reference or spec.name, "doi": spec.doi}]
    return out
