"""Screenshots of the napari plugin for the README (docs/images/napari_*.png).

Run headless (needs Xvfb; see tests/_qt_display.py):

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1400x900x24" python docs/napari_screenshots.py

It opens the plugin's sample (a synthetic widefield specimen and its PSF), deconvolves it with
the Deconvolve widget (Richardson–Lucy, 30 iterations, in a thread worker) and compares raw,
RL and ground truth with the Compare widget; each step is saved as a PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
import numpy as np
from npe2 import PluginManager, PluginManifest
from qtpy.QtWidgets import QApplication

from lucyd.napari import MANIFEST

OUT = Path(__file__).resolve().parent / "images"
SIZE = (1280, 760)


def _wait(widget) -> None:
    while widget.runner.running:
        QApplication.processEvents()
    if widget.runner.outcome != "done":
        sys.exit(f"{type(widget).__name__}: {widget.status.text()}")


def _save(viewer, name: str) -> None:
    for _ in range(20):
        QApplication.processEvents()
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path, f"{path.stat().st_size / 1024:.0f} KiB")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    manager = PluginManager.instance()
    if "lucyd" not in manager._manifests:
        manager.register(PluginManifest.from_file(MANIFEST))
    viewer = napari.Viewer(show=True, title="lucyd in napari")
    viewer.window._qt_window.resize(*SIZE)
    raw, psf, gt = viewer.open_sample("lucyd", "specimen")
    viewer.dims.set_point(0, raw.data.shape[0] // 2 * raw.scale[0])

    _, deconv = viewer.window.add_plugin_dock_widget("lucyd", "Deconvolve")
    deconv.image.select(raw)
    deconv.psf.select(psf)
    deconv.form["iterations"].value = 30
    deconv.run()
    _wait(deconv)
    rl = deconv.result
    rl.contrast_limits = (0, float(np.percentile(rl.data, 99.9)))
    raw.visible = False
    _save(viewer, "napari_deconvolve.png")

    viewer.window.remove_dock_widget("all")
    _, compare = viewer.window.add_plugin_dock_widget("lucyd", "Compare")
    compare.first.select(raw)
    compare.second.select(rl)
    compare.truth.select(gt)
    compare.run()
    _wait(compare)
    viewer.reset_view()
    _save(viewer, "napari_compare.png")
    viewer.close()


if __name__ == "__main__":
    main()
