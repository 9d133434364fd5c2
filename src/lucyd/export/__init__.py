"""Model interchange: trained lucyd models as packages other tools run.

* :mod:`lucyd.export.bioimageio` — bioimage.io model packages (spec 0.5): :func:`export_bioimageio`
  writes one from a model folder (``lucyd export``), :func:`predict_package_file` restores an
  image with a package, lucyd's own or another tool's (``lucyd predict PACKAGE.zip``), and
  :func:`bioimageio_test` runs bioimageio.core's test of a package (``bioimageio test``).

The package imports ``bioimageio.spec`` / ``bioimageio.core`` only when a function needs them
(the optional extra ``lucyd[bioimageio]``); reading lucyd's own packages needs neither.
"""

from lucyd.export.bioimageio import (
    bioimageio_test,
    export_bioimageio,
    is_bioimageio_package,
    load_lucyd_package,
    predict_package_file,
)

__all__ = [
    "export_bioimageio",
    "is_bioimageio_package",
    "load_lucyd_package",
    "predict_package_file",
    "bioimageio_test",
]
