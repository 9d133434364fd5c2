"""The lucyd widgets for napari: PSF, Deconvolve, Restore, Predict with uncertainty, Compare.

Every widget is a thin layer over a lucyd library call (the same call a script makes): the
Deconvolve and Restore widgets enumerate the restorer registry (:mod:`lucyd.methods`) and
build their forms from each method's parameter schema (:class:`~lucyd.napari.forms.ConfigForm`);
Restore also offers ``lucyd restore`` (:func:`lucyd.restore.restore`, a network trained on data
calibrated to the specimen). Work runs in a napari thread worker with lucyd's progress reporter
and a Cancel button (:class:`~lucyd.napari.jobs.JobRunner`); the viewer stays responsive.
Layers keep their scale: voxel sizes (µm) come from the layers' scale and go to the results.
Images with more axes than the method's (time points, channels shown as extra axes) are
restored one (z, y, x) / (y, x) stack at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, LineEdit, SpinBox
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from lucyd.errors import InputError, LucydError
from lucyd.methods import available_methods, build_method, get_method
from lucyd.napari.forms import ConfigForm, LayerPicker, parse_text
from lucyd.napari.io import METADATA_KEY, layer_voxel_size
from lucyd.napari.jobs import JobRunner

__all__ = ["CompareWidget", "DeconvolveWidget", "PSFWidget", "PredictWidget", "RestoreWidget",
           "RestorerWidget", "over_leading_axes"]

#: the Restore widget's entry for ``lucyd restore`` (not a registry method: a whole pipeline)
CALIBRATED = "lucyd restore (calibrated network)"


# ----------------------------------------------------------------------------- helpers

def layer_source(layer, name: str):
    """A layer's data as it is (the full-resolution level of a multiscale layer): converted to
    float32 in the worker (:func:`as_float32`), not in the GUI thread."""
    if layer is None:
        raise InputError(f"{name}: choose an image layer")
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def as_float32(data) -> np.ndarray:
    return np.asarray(data, dtype=np.float32)


def layer_array(layer, name: str) -> np.ndarray:
    """A layer's data as float32 (for small layers such as PSFs, read in the GUI thread)."""
    return as_float32(layer_source(layer, name))


def spatial_ndim(layer, data: np.ndarray, psf: np.ndarray | None = None) -> int:
    """How many trailing axes are space: the PSF's, else the layer's z/y/x axis labels, else ≤ 3."""
    if psf is not None:
        return psf.ndim
    labels = [str(a).lower() for a in getattr(layer, "axis_labels", ())]
    count = sum(a in ("z", "y", "x") for a in labels)
    return count if count in (2, 3) and labels[-count:] == ["z", "y", "x"][-count:] else min(len(data.shape), 3)


def over_leading_axes(fn: Callable[[np.ndarray], np.ndarray], data: np.ndarray, ndim: int) -> np.ndarray:
    """``fn`` applied to every trailing ``ndim``-D stack of ``data`` (time points restored
    independently), results stacked back in the leading axes."""
    if data.ndim < ndim:
        raise InputError(f"image: {data.ndim} axes, the method needs {ndim}")
    if data.ndim == ndim:
        return fn(data)
    lead = data.shape[: data.ndim - ndim]
    outs = [fn(data[index]) for index in np.ndindex(*lead)]
    return np.stack(outs).reshape(lead + outs[0].shape)


def add_result(viewer, data: np.ndarray, like, name: str, note: dict | None = None):
    """Add ``data`` as an image layer placed like layer ``like`` (scale rescaled on axes whose
    size changed, e.g. isotropic restoration's z)."""
    scale = np.asarray(like.scale, dtype=float).copy()
    old_shape = np.shape(like.data[0] if getattr(like, "multiscale", False) else like.data)
    if data.shape != old_shape and len(old_shape) == data.ndim:
        scale = scale * np.asarray(old_shape, float) / np.asarray(data.shape, float)
    meta = dict((like.metadata or {}).get(METADATA_KEY) or {})
    if meta.get("voxel_size") is not None:
        meta["voxel_size"] = [float(s) for s in scale[-len(meta["voxel_size"]):]]
    kwargs: dict[str, Any] = {"name": name, "scale": scale, "translate": like.translate,
                              "metadata": {METADATA_KEY: meta, **({"lucyd_job": note} if note else {})}}
    for attr in ("axis_labels", "units"):
        value = getattr(like, attr, None)
        if value is not None:
            kwargs[attr] = value
    return viewer.add_image(data, **kwargs)


class JobWidget(QWidget):
    """A dock widget with a form, Run / Cancel buttons, a status line and a :class:`JobRunner`."""

    run_label = "Run"

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.setLayout(QVBoxLayout())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.runner = JobRunner(self.status.setText, parent=self)
        self.run_button = QPushButton(self.run_label)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.runner.finished.connect(self._idle)
        self.result = None  # the last job's result (what was added to the viewer)

    def _finish_layout(self) -> None:
        buttons = QWidget()
        buttons.setLayout(QHBoxLayout())
        buttons.layout().setContentsMargins(0, 0, 0, 0)
        buttons.layout().addWidget(self.run_button)
        buttons.layout().addWidget(self.cancel_button)
        self.layout().addWidget(buttons)
        self.layout().addWidget(self.status)
        self.layout().addStretch(1)

    def prepare(self) -> tuple[Callable, Callable, str]:
        """Check the inputs and return ``(work(reporter), on_result(value), label)``."""
        raise NotImplementedError

    def run(self) -> None:
        """Start the job (bad inputs: one line in the status and a notification, no job)."""
        if self.runner.running:
            return
        try:
            work, on_result, label = self.prepare()
        except LucydError as exc:
            self.status.setText(str(exc))
            show_error(str(exc))
            return
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.runner.start(work, on_result, label)

    def _idle(self, _outcome: str) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)


# ----------------------------------------------------------------------------- restorers

class RestorerWidget(JobWidget):
    """Image (+ PSF) layer, a method of the registry, its schema's form; adds the restoration.

    Subclasses choose which registry tasks to offer (:attr:`tasks`) and whether to offer
    ``lucyd restore`` (:attr:`calibrated`).
    """

    tasks: tuple[str, ...] | None = None
    exclude_tasks: tuple[str, ...] = ("identity",)
    calibrated = False
    default_method = "rl"
    #: fields the widget fills from the layers
    from_layers = ("psf_voxel_size",)

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.image = LayerPicker(napari_viewer, label="image")
        self.psf = LayerPicker(napari_viewer, label="PSF", optional=True)
        names = self.method_names()
        self.method = ComboBox(label="method", choices=names,
                               value=self.default_method if self.default_method in names else names[0])
        header = Container(widgets=[self.image, self.psf, self.method])
        self.layout().addWidget(header.native)
        self._form_holder = QWidget()
        self._form_holder.setLayout(QVBoxLayout())
        self._form_holder.layout().setContentsMargins(0, 0, 0, 0)
        self.layout().addWidget(self._form_holder)
        self.form: ConfigForm | None = None
        self.method.changed.connect(self._rebuild_form)
        self._rebuild_form()
        self._finish_layout()

    def method_names(self) -> list[str]:
        """The registry's methods of this widget's tasks (plus ``lucyd restore``)."""
        names = [n for n in available_methods()
                 if (self.tasks is None or get_method(n).task in self.tasks)
                 and get_method(n).task not in self.exclude_tasks]
        return ([CALIBRATED] if self.calibrated else []) + names

    def config_schema(self, name: str):
        if name == CALIBRATED:
            from lucyd.restore import RestoreConfig

            return RestoreConfig
        return get_method(name).config

    def _rebuild_form(self, *_):
        if self.form is not None:
            self._form_holder.layout().removeWidget(self.form.container.native)
            self.form.container.native.setParent(None)
        self.form = ConfigForm(self.config_schema(self.method.value), exclude=self.from_layers)
        self._form_holder.layout().addWidget(self.form.container.native)
        needs = self.method.value == CALIBRATED or get_method(self.method.value).needs_psf
        self.psf.label = "PSF" if needs else "PSF (unused)"

    def prepare(self):
        name = self.method.value
        layer = self.image.value
        image = layer_source(layer, "image")
        psf_layer = self.psf.value
        needs_psf = name == CALIBRATED or get_method(name).needs_psf
        psf = layer_array(psf_layer, "PSF") if needs_psf and psf_layer is not None else None
        if needs_psf and psf is None:
            raise InputError(f"PSF: {name} needs a PSF layer (the PSF widget makes one)")
        ndim = spatial_ndim(layer, image, psf)
        voxel = layer_voxel_size(layer.scale, layer.metadata, ndim)
        psf_voxel = layer_voxel_size(psf_layer.scale, psf_layer.metadata, psf.ndim) if psf is not None else None
        params = self.form.values()
        if name == CALIBRATED:
            from lucyd.restore import RestoreConfig, restore

            config = RestoreConfig.build(**params)

            def one(stack, _reporter):  # the active reporter reaches its loops (progress=True)
                return restore(stack, psf, config=config, voxel_size=voxel, psf_voxel_size=psf_voxel,
                               progress=True).image

            label, note = "lucyd restore", {"method": "lucyd restore", "config": config.model_dump(mode="json")}
        else:
            if (psf_voxel is not None and voxel is not None and psf_voxel != voxel
                    and "psf_voxel_size" in get_method(name).config.model_fields):
                params["psf_voxel_size"] = psf_voxel
            restorer = build_method(name, **params)

            def one(stack, reporter):
                return restorer.restore(stack, psf=psf, voxel_size=voxel, progress=reporter)

            label = restorer.label
            note = {"method": name, "config": restorer.config.model_dump(mode="json")}

        def work(reporter):
            return over_leading_axes(lambda stack: one(stack, reporter), as_float32(image), ndim)

        def on_result(out):
            self.result = add_result(self.viewer, out, layer, f"{layer.name} ({label})", note)

        return work, on_result, label


class DeconvolveWidget(RestorerWidget):
    """Deconvolution: Richardson–Lucy, Wiener–Butterworth RL and accelerated RL from the registry."""

    tasks = ("deconvolution",)
    default_method = "rl"


class RestoreWidget(RestorerWidget):
    """Every restorer of the registry, and ``lucyd restore`` (a network trained on calibrated data)."""

    calibrated = True
    default_method = CALIBRATED


# ----------------------------------------------------------------------------- PSF

class PSFWidget(JobWidget):
    """A PSF layer from a model of the optics (:func:`lucyd.psf.make_psf`) or from a bead image
    (:func:`lucyd.psf.from_beads`)."""

    run_label = "Make PSF"

    def __init__(self, napari_viewer):
        from lucyd.psf import MODELS

        super().__init__(napari_viewer)
        self.source = ComboBox(label="from", choices=["model", "beads"], value="model")
        self.model = ComboBox(label="model", choices=list(MODELS), value="born-wolf")
        self.shape = LineEdit(label="shape (z, y, x)", value="33, 65, 65")
        self.voxel_size = LineEdit(label="voxel size (µm)", value="0.2, 0.1, 0.1")
        self.like = LayerPicker(napari_viewer, label="voxel size of", optional=True)
        self.na = FloatSpinBox(label="NA", value=1.4, min=0.05, max=1.7, step=0.05)
        self.wavelength = FloatSpinBox(label="emission (µm)", value=0.52, min=0.2, max=2.0, step=0.01)
        self.ni = FloatSpinBox(label="immersion index", value=1.518, min=1.0, max=2.0, step=0.001)
        self.beads = LayerPicker(napari_viewer, label="bead image", optional=True)
        self.threshold = FloatSpinBox(label="bead threshold", value=0.2, min=0.0, max=1.0, step=0.05)
        self.min_distance = SpinBox(label="min. bead distance (px)", value=3, min=1, max=1000)
        self.ni.native.setDecimals(3)
        self.form = Container(widgets=[self.source, self.model, self.shape, self.voxel_size, self.like,
                                       self.na, self.wavelength, self.ni, self.beads, self.threshold,
                                       self.min_distance])
        self.layout().addWidget(self.form.native)
        self.source.changed.connect(self._show_source)
        self._show_source()
        self._finish_layout()

    def _show_source(self, *_):
        model = self.source.value == "model"
        for widget in (self.model, self.voxel_size, self.like, self.na, self.wavelength, self.ni):
            widget.visible = model
        for widget in (self.beads, self.threshold, self.min_distance):
            widget.visible = not model

    def _voxel(self, ndim: int):
        like = self.like.value
        if like is not None:
            voxel = layer_voxel_size(like.scale, like.metadata, ndim)
            if voxel is None:
                raise InputError(f"voxel size of: layer {like.name!r} has no voxel size (scale)")
            return voxel
        value = parse_text(self.voxel_size.value)
        return tuple(value) if isinstance(value, list) else value

    def prepare(self):
        from lucyd.psf import from_beads, make_psf
        from lucyd.validation import parse_int_tuple

        shape_text = self.shape.value.strip()
        shape = parse_int_tuple(shape_text, "shape") if shape_text else None
        if self.source.value == "model":
            if shape is None:
                raise InputError("shape: give the PSF's odd (z, y, x) or (y, x) shape")
            voxel = self._voxel(len(shape))
            model = self.model.value
            optics = {"na": self.na.value, "wavelength": self.wavelength.value, "ni": self.ni.value}

            def work(reporter):
                return make_psf(model, shape, voxel, **optics), voxel

            label = f"PSF ({model})"
            like = None
        else:
            like = self.beads.value
            beads = layer_source(like, "bead image")
            voxel = layer_voxel_size(like.scale, like.metadata, len(beads.shape))
            options = {"threshold": self.threshold.value, "min_distance": self.min_distance.value,
                       "shape": shape}

            def work(reporter):
                return from_beads(as_float32(beads), voxel, **options), voxel

            label = f"PSF (beads of {like.name})"

        def on_result(value):
            psf, voxel = value
            scale = voxel if voxel is not None else (1.0,) * psf.ndim
            meta = {METADATA_KEY: {"axes": "ZYX"[-psf.ndim:], "voxel_size": list(voxel) if voxel else None}}
            self.result = self.viewer.add_image(psf, name=label, scale=scale, colormap="magma", metadata=meta)

        return work, on_result, label


# ----------------------------------------------------------------------------- prediction

class PredictWidget(JobWidget):
    """A trained model or ensemble folder (``lucyd train``) on an image layer: the mean restoration
    and its per-voxel uncertainty maps (:func:`lucyd.train.uncertainty.predict_with_uncertainty`)."""

    run_label = "Predict"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.model = FileEdit(label="model folder", mode="d")
        self.image = LayerPicker(napari_viewer, label="image")
        self.tile_shape = LineEdit(label="tile shape", value="")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self.form = Container(widgets=[self.model, self.image, self.tile_shape, self.device])
        self.layout().addWidget(self.form.native)
        self._finish_layout()

    def prepare(self):
        from lucyd.train.ensemble import load_any
        from lucyd.train.uncertainty import predict_with_uncertainty

        folder = str(self.model.value or "")
        if folder in ("", "."):
            raise InputError("model folder: choose a trained model or ensemble folder (lucyd train)")
        layer = self.image.value
        image = layer_source(layer, "image")
        tile = parse_text(self.tile_shape.value)
        tile = tuple(tile) if isinstance(tile, list) else tile
        device = self.device.value
        model = load_any(folder)  # quick, and a bad folder is a one-line error before any work

        def work(reporter):
            return predict_with_uncertainty(model, as_float32(image), tile_shape=tile, device=device, progress=True,
                                            require=False)

        def on_result(value):
            mean, maps = value
            self.result = [add_result(self.viewer, mean, layer, f"{layer.name} (mean)", {"model": folder})]
            for key, array in maps.items():
                added = add_result(self.viewer, array, layer, f"{layer.name} (uncertainty: {key})",
                                   {"model": folder, "uncertainty": key})
                added.colormap = "inferno"
                self.result.append(added)
            if not maps:
                self.status.setText("this model gives no uncertainty (a single non-probabilistic network)")

        return work, on_result, "predict"


# ----------------------------------------------------------------------------- comparison

class CompareWidget(JobWidget):
    """Two restorations side by side (napari's grid), and their metrics against a ground-truth
    layer when one is chosen (:func:`lucyd.metrics.evaluate`: percentile-normalised ground
    truth, affinely fitted prediction; PSNR, SSIM, NRMSE)."""

    run_label = "Compare"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.first = LayerPicker(napari_viewer, label="first")
        self.second = LayerPicker(napari_viewer, label="second", optional=True)
        self.truth = LayerPicker(napari_viewer, label="ground truth", optional=True)
        self.form = Container(widgets=[self.first, self.second, self.truth])
        self.layout().addWidget(self.form.native)
        self.table = QTableWidget(0, 0)
        self.layout().addWidget(self.table)
        self.metrics: dict[str, dict[str, float]] = {}
        self._finish_layout()

    def prepare(self):
        from lucyd.metrics import evaluate

        layers = [layer for layer in (self.first.value, self.second.value) if layer is not None]
        if not layers:
            raise InputError("first: choose an image layer")
        truth_layer = self.truth.value
        arrays = {layer.name: layer_source(layer, layer.name) for layer in layers}
        truth = layer_source(truth_layer, "ground truth") if truth_layer is not None else None
        if truth is not None:
            for name, array in arrays.items():
                if tuple(array.shape) != tuple(truth.shape):
                    raise InputError(f"{name}: shape {tuple(array.shape)} differs from the ground truth's "
                                     f"{tuple(truth.shape)}")

        def work(reporter):
            if truth is None:
                return {}
            gt = as_float32(truth)
            return {name: evaluate(as_float32(array), gt) for name, array in arrays.items()}

        def on_result(metrics):
            self.metrics = metrics
            shown = {*(layer.name for layer in layers)} | ({truth_layer.name} if truth_layer is not None else set())
            for layer in self.viewer.layers:
                layer.visible = layer.name in shown
            grid = getattr(getattr(self.viewer, "canvas", None), "grid", None) or self.viewer.grid  # napari ≥ 0.9
            grid.enabled = len(shown) > 1
            self._fill_table(metrics)

        return work, on_result, "compare"

    def _fill_table(self, metrics: dict[str, dict[str, float]]) -> None:
        """One column per compared layer, one row per metric."""
        keys = sorted({k for values in metrics.values() for k in values})
        self.table.clear()
        self.table.setRowCount(len(keys))
        self.table.setColumnCount(len(metrics))
        self.table.setVerticalHeaderLabels(keys)
        self.table.setHorizontalHeaderLabels(list(metrics))
        for col, values in enumerate(metrics.values()):
            for row, key in enumerate(keys):
                self.table.setItem(row, col, QTableWidgetItem(f"{values.get(key, float('nan')):.4g}"))
        self.table.resizeColumnsToContents()
