"""bioimage.io model packages (spec 0.5): export, prediction, test.

* :func:`export_bioimageio` — a trained model folder as a package zip (``lucyd export``);
* :func:`predict_package_file` — restore an image file with a package, lucyd's own (exactly as
  its model folder) or another tool's (through bioimageio.core) (``lucyd predict PACKAGE.zip``);
* :func:`load_lucyd_package` — a lucyd package back as a :class:`~lucyd.train.RestorationModel`;
* :func:`is_bioimageio_package` — whether a path is a package (zip, folder or rdf);
* :func:`bioimageio_test` — bioimageio.core's test of a package (``bioimageio test``).

Needs the ``lucyd[bioimageio]`` extra (bioimageio.core) except for reading lucyd's own packages.
"""

from lucyd.export.bioimageio.export import DEFAULT_LICENSE, export_bioimageio
from lucyd.export.bioimageio.package import is_bioimageio_package, load_lucyd_package
from lucyd.export.bioimageio.run import (
    bioimageio_test,
    predict_package_file,
    predict_with_bioimageio_core,
)

__all__ = [
    "DEFAULT_LICENSE",
    "export_bioimageio",
    "is_bioimageio_package",
    "load_lucyd_package",
    "predict_package_file",
    "predict_with_bioimageio_core",
    "bioimageio_test",
]
