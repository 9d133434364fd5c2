"""The lucyd plugin for napari (``pip install "lucyd[napari]"``).

Contributions (``napari.yaml``, registered through the ``napari.manifest`` entry point):

* a reader and a writer built on :mod:`lucyd.io` (ImageJ TIFF, OME-TIFF, OME-Zarr, ``.npy``):
  the voxel size (µm) becomes the layer's scale and back (:mod:`lucyd.napari.io`);
* widgets (:mod:`lucyd.napari.widgets`): PSF (model or beads), Deconvolve and Restore (the
  restorer registry, forms from the methods' parameter schemas, and ``lucyd restore``),
  Predict with uncertainty, Compare; long work in thread workers with progress and cancel
  (:mod:`lucyd.napari.jobs`);
* sample data: a small synthetic widefield specimen with its PSF (:mod:`lucyd.napari.sample`).

Nothing here is imported by the rest of lucyd; importing :mod:`lucyd.napari.io` or
:mod:`lucyd.napari.sample` does not need napari. The widgets import lucyd's heavy modules (torch,
the PSF models, training) inside the callbacks that use them, so that opening napari, which builds
every plugin's widgets, does not pay for them (the same reason as the CLI's lazy imports).
"""

from pathlib import Path

#: the npe2 manifest of the plugin
MANIFEST = Path(__file__).with_name("napari.yaml")

__all__ = ["MANIFEST"]
