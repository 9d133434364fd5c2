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
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
import torch
from pydantic import ValidationError

from lucyd.errors import InputError
from lucyd.export.bioimageio.contents import (  # noqa: F401 (public names, re-exported)
    _EXTRA_HINT,
    _SCALE_CHECK_SIZES,
    DEFAULT_LICENSE,
    FILES,
    SCRIPT_TOLERANCE,
    SPATIAL_AXES,
    TEST_EXTENT,
    _round_up,
    architecture_source,
    axis_scales,
    check_license,
    citations,
    crop_or_pad,
    default_sample,
    input_geometry,
    make_test_tensors,
    readme_text,
    require_bioimageio,
    scripted,
    tensor_test_shape,
    write_cover,
)
from lucyd.io import read_image
from lucyd.io.atomic import atomic_path
from lucyd.io.outputs import check_output_path
from lucyd.train import load_model


def _name(card, model_dir: Path, name: str | None) -> str:
    if name is None:
        name = f"lucyd {card.network.name.upper()} {card.network.ndim}D {model_dir.name}"
    clean = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name).strip()
    if len(clean) < 5:
        clean = f"lucyd {clean}".strip()
    return clean[:128]


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

        torch.save(state, files["state_dict"])
        shapes = [x.shape[2:], min_shape]
        torch.jit.save(scripted(model.net.cpu(), x, shapes), files["torchscript"])
        np.save(files["test_input"], x)
        np.save(files["test_output"], y)

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
        from bioimageio.spec import save_bioimageio_package  # optional extra (lucyd[bioimageio])

        with atomic_path(output) as part:
            save_bioimageio_package(descr, output_path=part)
    return output


def build_description(
    model, card, files: dict, *, attachments, name, description, authors, license, cite,
    min_shape, step, halo, ratio, n_channels,
):
    """The :class:`bioimageio.spec.model.v0_5.ModelDescr` of an exported model (validated)."""
    from bioimageio.spec.model import v0_5 as bio  # optional extra (lucyd[bioimageio])

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
