"""The napari plugin (lucyd.napari): manifest, reader/writer, widgets, workers, screenshot.

Headless: Qt's offscreen platform; napari's canvas needs OpenGL, which tests/_qt_display.py
finds or provides (a private Xvfb) — without it the viewer tests skip with the reason. Without
the ``napari`` extra installed, the whole module skips.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari not installed (pip install 'lucyd[napari]')")
pytest.importorskip("pytestqt", reason="pytest-qt not installed (pip install 'lucyd[test]')")
from _qt_display import ensure_gl, qt_unavailable  # noqa: E402

if (_why := qt_unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)
npe2 = pytest.importorskip("npe2", reason="npe2 not installed (pip install 'lucyd[napari]')")

from lucyd.io import ImageMetadata, read_image, write_image  # noqa: E402
from lucyd.methods import available_methods, build_method, get_method  # noqa: E402
from lucyd.napari import MANIFEST  # noqa: E402
from lucyd.napari.io import layer_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WIDGETS = {"PSF": "PSFWidget", "Deconvolve": "DeconvolveWidget", "Restore": "RestoreWidget",
           "Predict with uncertainty": "PredictWidget", "Compare": "CompareWidget"}
VOXEL = (0.3, 0.13, 0.13)


# ----------------------------------------------------------------------------- no Qt needed

def test_manifest_validates_and_is_registered():
    from npe2.cli import app
    from typer.testing import CliRunner

    # `npe2 validate` on the manifest file, importing every python_name it names
    result = CliRunner().invoke(app, ["validate", str(MANIFEST), "--imports"])
    assert result.exit_code == 0, result.output
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "lucyd"
    assert {w.display_name for w in manifest.contributions.widgets} == set(WIDGETS)
    # registered through the napari.manifest entry point, shipped as package data
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["napari.manifest"]["lucyd"] == "lucyd.napari:napari.yaml"
    assert "napari/napari.yaml" in project["tool"]["setuptools"]["package-data"]["lucyd"]
    assert "napari" in project["project"]["optional-dependencies"]
    # where lucyd is installed with this entry point (CI: pip install -e .), by name too
    points = importlib.metadata.entry_points(group="napari.manifest")
    if any(p.name == "lucyd" and p.value == "lucyd.napari:napari.yaml" for p in points):
        result = CliRunner().invoke(app, ["validate", "lucyd"])
        assert result.exit_code == 0, result.output


def test_layer_data_scale_channels_and_time():
    image = np.zeros((4, 5, 6), np.float32)
    ((data, kwargs, kind),) = layer_data(image, ImageMetadata("ZYX", VOXEL), "cells")
    assert kind == "image" and data is image and kwargs["name"] == "cells"
    assert kwargs["scale"] == list(VOXEL) and kwargs["axis_labels"] == ["z", "y", "x"]
    assert kwargs["metadata"]["lucyd"]["voxel_size"] == list(VOXEL)
    ((_, kwargs, _),) = layer_data(np.zeros((5, 6)), ImageMetadata("YX"), "plain")
    assert kwargs["scale"] == [1.0, 1.0] and kwargs["units"] == ["pixel", "pixel"]
    # a metadata object with channel and time axes (as a TCZYX reader may give)
    tczyx = SimpleNamespace(axes="TCZYX", voxel_size=VOXEL, channel_names=["DAPI", "GFP"], time_interval=30.0)
    ((_, kwargs, _),) = layer_data(np.zeros((3, 2, 4, 5, 6)), tczyx, "movie")
    assert kwargs["channel_axis"] == 1 and kwargs["name"] == ["movie [DAPI]", "movie [GFP]"]
    assert kwargs["scale"] == [30.0, *VOXEL] and kwargs["axis_labels"] == ["t", "z", "y", "x"]
    assert kwargs["units"] == ["second", "micrometer", "micrometer", "micrometer"]


def test_two_channel_time_series_opens_as_channels_and_saves_with_its_interval(tmp_path, rng):
    """Through lucyd.io's time-series reader and writer, where lucyd.io has them."""
    from napari.components import ViewerModel

    import lucyd.io
    from lucyd.napari.io import read_layers
    from lucyd.napari.io import write_image as write_layer

    make_metadata = getattr(lucyd.io.metadata, "make_metadata", None)
    if make_metadata is None or not hasattr(lucyd.io, "read_hyperstack"):
        pytest.skip("this lucyd.io reads and writes (y, x) / (z, y, x) images only")
    movie = rng.random((3, 2, 4, 8, 9)).astype(np.float32)  # (t, c, z, y, x)
    meta = make_metadata("TCZYX", VOXEL, {}, channel_names=["DAPI", "GFP"], time_interval=30.0)
    write_image(tmp_path / "movie.ome.tif", movie, meta)
    viewer = ViewerModel()  # the napari model without Qt: the reader's layer data as napari splits it
    for data, kwargs, _ in read_layers(str(tmp_path / "movie.ome.tif")):
        viewer.add_image(data, **kwargs)
    assert [layer.name for layer in viewer.layers] == ["movie [DAPI]", "movie [GFP]"]
    gfp = viewer.layers["movie [GFP]"]
    np.testing.assert_array_equal(gfp.data, movie[:, 1])
    np.testing.assert_allclose(gfp.scale, (30.0, *VOXEL))
    out = tmp_path / "gfp.ome.zarr"
    write_layer(str(out), gfp.data, {**gfp._get_state(), "name": gfp.name})
    back, back_meta = lucyd.io.read_hyperstack(out)
    np.testing.assert_array_equal(back, movie[:, 1])
    assert back_meta.axes == "TZYX" and back_meta.time_interval == 30.0
    np.testing.assert_allclose(back_meta.voxel_size, VOXEL)


# ----------------------------------------------------------------------------- viewer fixtures

@pytest.fixture(scope="session")
def qt_display():
    """OpenGL for Qt before pytest-qt's session QApplication exists (session scope, listed first)."""
    reason = ensure_gl()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def viewer_factory(qt_display, make_napari_viewer):
    from npe2 import PluginManager

    manager = PluginManager.instance()
    if "lucyd" not in manager._manifests:  # an editable install made before the entry point existed
        manager.register(npe2.PluginManifest.from_file(MANIFEST))
    return make_napari_viewer


@pytest.fixture
def viewer(viewer_factory):
    return viewer_factory()


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("lucyd", name)
    return widget


def _sample(viewer):
    raw, psf, gt = viewer.open_sample("lucyd", "specimen")
    return raw, psf, gt


def _run(qtbot, widget, timeout=60_000):
    """Click Run; the job must still be running when the click returns (the GUI is not blocked)
    and a Qt timer must fire while it runs; wait for its end."""
    from qtpy.QtCore import QTimer

    ticks = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(widget.runner.running))
    timer.start()
    widget.run_button.click()
    started = widget.runner.running
    qtbot.waitUntil(lambda: widget.runner.outcome is not None, timeout=timeout)
    timer.stop()
    return started, sum(ticks)


# ----------------------------------------------------------------------------- reader, writer, sample

def test_reader_sets_scale_from_voxel_size_and_writer_keeps_it(viewer, tmp_path, rng):
    image = rng.random((6, 16, 20)).astype(np.float32)
    path = tmp_path / "cells.ome.tif"
    write_image(path, image, ImageMetadata("ZYX", VOXEL))
    (layer,) = viewer.open(str(path), plugin="lucyd")
    assert layer.name == "cells"
    np.testing.assert_allclose(layer.scale, VOXEL)
    np.testing.assert_array_equal(layer.data, image)
    out = tmp_path / "saved.ome.zarr"
    import napari

    napari.save_layers(str(out), [layer], plugin="lucyd")
    back, meta = read_image(out)
    np.testing.assert_array_equal(back, image)
    np.testing.assert_allclose(meta.voxel_size, VOXEL)


def test_sample_data_has_voxel_size(viewer):
    raw, psf, gt = _sample(viewer)
    assert raw.data.ndim == 3 and psf.data.ndim == 3 and gt.data.shape == raw.data.shape
    np.testing.assert_allclose(raw.scale, (0.2, 0.1, 0.1))
    np.testing.assert_allclose(psf.scale, raw.scale)
    assert abs(float(psf.data.sum()) - 1) < 1e-3


# ----------------------------------------------------------------------------- widgets

def test_widgets_are_offered_with_the_registry_and_its_schemas(viewer):
    import lucyd.napari.widgets as widgets_module
    from lucyd.napari.widgets import CALIBRATED

    docked = {name: _dock(viewer, name) for name in WIDGETS}
    for name, cls in WIDGETS.items():
        assert type(docked[name]).__name__ == cls
        assert isinstance(docked[name], getattr(widgets_module, cls))
    deconv = docked["Deconvolve"]
    assert list(deconv.method.choices) == available_methods(task="deconvolution")
    restore = docked["Restore"]
    others = [n for n in available_methods() if get_method(n).task != "identity"]
    assert list(restore.method.choices) == [CALIBRATED, *others]
    for method in ("rl", "wb-rl"):  # the form is the method's parameter schema
        deconv.method.value = method
        expected = [f for f in get_method(method).config.model_fields if f != "psf_voxel_size"]
        assert deconv.form.names == expected
        assert deconv.form["iterations"].value == get_method(method).config().iterations


def test_deconvolve_widget_runs_in_a_worker_and_equals_the_library_call(viewer, qtbot):
    raw, psf, _ = _sample(viewer)
    widget = _dock(viewer, "Deconvolve")
    widget.image.select(raw)
    widget.psf.select(psf)
    widget.method.value = "rl"
    widget.form["iterations"].value = 4
    started, ticks = _run(qtbot, widget)
    assert started and ticks > 0  # the event loop kept running while the worker worked
    assert widget.runner.outcome == "done", widget.status.text()
    qtbot.waitUntil(lambda: widget.runner.last_steps[:2] == (4, 4))  # every iteration reached the GUI thread
    result = widget.result
    assert result.name == "specimen (RL)" and result in viewer.layers
    np.testing.assert_allclose(result.scale, raw.scale)
    expected = build_method("rl", iterations=4).restore(raw.data, psf=psf.data, voxel_size=(0.2, 0.1, 0.1))
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-5 * float(expected.max()))


def test_cancel_stops_the_job_and_adds_nothing(viewer, qtbot):
    raw, psf, _ = _sample(viewer)
    widget = _dock(viewer, "Deconvolve")
    widget.image.select(raw)
    widget.psf.select(psf)
    widget.form["iterations"].value = 10_000
    widget.runner.stepped.connect(lambda done, total, desc: widget.cancel_button.click())
    n_layers = len(viewer.layers)
    _run(qtbot, widget)
    assert widget.runner.outcome == "cancelled"
    assert len(viewer.layers) == n_layers
    assert widget.runner.last_steps[0] < 10_000
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_bad_input_is_one_line_and_starts_nothing(viewer, qtbot):
    raw, _, _ = _sample(viewer)
    widget = _dock(viewer, "Deconvolve")
    widget.image.select(raw)
    widget.psf.value = None
    widget.run_button.click()
    assert not widget.runner.running and widget.runner.outcome is None
    assert "needs a PSF layer" in widget.status.text() and "\n" not in widget.status.text()


def test_psf_widget_equals_make_psf_and_from_beads(viewer, qtbot):
    from lucyd.psf import make_psf

    raw, _, _ = _sample(viewer)
    widget = _dock(viewer, "PSF")
    widget.shape.value = "9, 17, 17"
    widget.like.select(raw)
    widget.na.value, widget.wavelength.value = 1.2, 0.6
    _run(qtbot, widget)
    assert widget.runner.outcome == "done", widget.status.text()
    expected = make_psf("born-wolf", (9, 17, 17), (0.2, 0.1, 0.1), na=1.2, wavelength=0.6, ni=1.518)
    np.testing.assert_allclose(widget.result.data, expected, rtol=1e-6)
    np.testing.assert_allclose(widget.result.scale, (0.2, 0.1, 0.1))
    # from beads: three point sources blurred by that PSF
    from lucyd.forward import convolve
    from lucyd.psf import from_beads

    points = np.zeros((15, 48, 48), np.float32)
    points[7, [10, 24, 36], [12, 30, 20]] = 1000.0
    beads = viewer.add_image(convolve(points, expected) + 10, name="beads", scale=(0.2, 0.1, 0.1))
    widget.source.value = "beads"
    widget.beads.select(beads)
    _run(qtbot, widget)
    assert widget.runner.outcome == "done", widget.status.text()
    measured = from_beads(beads.data, (0.2, 0.1, 0.1), shape=(9, 17, 17), threshold=0.2, min_distance=3)
    np.testing.assert_allclose(widget.result.data, measured, rtol=1e-6)
    assert widget.result.name == "PSF (beads of beads)"
    np.testing.assert_allclose(widget.result.scale, (0.2, 0.1, 0.1))


def test_compare_widget_metrics_equal_evaluate(viewer, qtbot):
    from lucyd.metrics import evaluate

    raw, _, gt = _sample(viewer)
    smooth = viewer.add_image(build_method("gaussian", sigma=1.0).restore(raw.data), name="smoothed",
                              scale=raw.scale)
    widget = _dock(viewer, "Compare")
    widget.first.select(raw)
    widget.second.select(smooth)
    widget.truth.select(gt)
    _run(qtbot, widget)
    assert widget.runner.outcome == "done", widget.status.text()
    for layer in (raw, smooth):
        expected = evaluate(layer.data, gt.data)
        assert widget.metrics[layer.name] == pytest.approx(expected)
    grid = getattr(getattr(viewer, "canvas", None), "grid", None) or viewer.grid
    assert grid.enabled and widget.table.columnCount() == 2


@pytest.fixture
def shown_viewer(viewer_factory):
    return viewer_factory(show=True)


def test_screenshot_shows_the_layer(shown_viewer):
    viewer = shown_viewer
    raw, _, _ = _sample(viewer)
    viewer.dims.set_point(0, raw.data.shape[0] // 2 * raw.scale[0])
    shot = viewer.screenshot(canvas_only=True, size=(200, 240))
    assert shot.shape == (200, 240, 4) and shot.dtype == np.uint8
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 5  # not blank
    raw.visible = False
    empty = viewer.screenshot(canvas_only=True, size=(200, 240))[..., :3].astype(float)
    assert empty.std() < 1 and np.abs(rgb - empty).mean() > 5  # what is drawn is the layer


@pytest.fixture(scope="module")
def probabilistic_model(tmp_path_factory):
    """A tiny probabilistic CARE (a Laplace scale per voxel), trained for 3 steps."""
    import torch

    from lucyd.forward import camera_noise
    from lucyd.synth import phantom
    from lucyd.train import TrainConfig, train

    root = tmp_path_factory.mktemp("napari_model")
    for sub in ("raw", "gt"):
        (root / "data" / sub).mkdir(parents=True)
    for seed in range(2):
        gt = phantom("mixed", (32, 32), seed=seed)
        raw = camera_noise(gt, photons=5.0, seed=seed).astype(np.float32)
        write_image(root / "data" / "raw" / f"{seed}.tif", raw, ImageMetadata("YX", (0.1, 0.1)))
        write_image(root / "data" / "gt" / f"{seed}.tif", gt, ImageMetadata("YX", (0.1, 0.1)))
    config = TrainConfig(model="care", net_kwargs={"first_filters": 4, "probabilistic": True}, patch=(16, 16),
                         batch=2, steps=3, val_interval=3, bn_recalibration=0, device="cpu", seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, root / "data", root / "model")
    finally:
        torch.set_num_threads(threads)
    return root / "model"


def test_predict_widget_adds_mean_and_uncertainty(viewer, qtbot, probabilistic_model):
    from lucyd.synth import phantom
    from lucyd.train.ensemble import load_any
    from lucyd.train.uncertainty import predict_with_uncertainty

    image = phantom("mixed", (40, 48), seed=7) * np.float32(50)
    layer = viewer.add_image(image, name="cells", scale=(0.1, 0.1))
    widget = _dock(viewer, "Predict with uncertainty")
    widget.model.value = str(probabilistic_model)
    widget.image.select(layer)
    widget.device.value = "cpu"
    started, _ = _run(qtbot, widget)
    assert started and widget.runner.outcome == "done", widget.status.text()
    mean, maps = predict_with_uncertainty(load_any(probabilistic_model), image, device="cpu", require=False)
    names = [added.name for added in widget.result]
    assert names == ["cells (mean)", *(f"cells (uncertainty: {key})" for key in maps)]
    assert set(maps) == {"total", "laplace_scale"}
    for added, expected in zip(widget.result, [mean, *maps.values()], strict=True):
        np.testing.assert_allclose(added.data, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(added.scale, (0.1, 0.1))


def test_restore_widget_restores_each_time_point(viewer, qtbot, rng):
    from lucyd.napari.widgets import CALIBRATED
    from lucyd.restore import RestoreConfig

    movie = rng.random((3, 6, 20, 24)).astype(np.float32)  # (t, z, y, x)
    layer = viewer.add_image(movie, name="movie", scale=(30.0, *VOXEL), axis_labels=("t", "z", "y", "x"))
    widget = _dock(viewer, "Restore")
    assert widget.form.names == list(RestoreConfig.model_fields)  # lucyd restore's own schema
    widget.method.value = "gaussian"
    widget.image.select(layer)
    widget.form["sigma"].value = "1.5"
    _run(qtbot, widget)
    assert widget.runner.outcome == "done", widget.status.text()
    gaussian = build_method("gaussian", sigma=1.5)
    expected = np.stack([gaussian.restore(frame, voxel_size=VOXEL) for frame in movie])
    np.testing.assert_allclose(widget.result.data, expected, rtol=1e-6)
    np.testing.assert_allclose(widget.result.scale, layer.scale)
    widget.method.value = CALIBRATED
    assert widget.form.names == list(RestoreConfig.model_fields)
