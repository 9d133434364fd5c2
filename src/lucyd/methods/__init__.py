"""Restoration methods behind one signature: the restorer registry.

Every method restores an image with ``restorer.restore(image, *, psf=None, voxel_size=None,
progress=None, cancel=None) -> float32 ndarray``; its parameters are a pydantic schema
(:class:`lucyd.config.JobConfig`), validated once when the restorer is built::

    from lucyd.methods import available_methods, build_method

    available_methods()           # ['gaussian', 'isotropic', 'network', 'raw', 'rl', ...]
    rl = build_method("rl", iterations=30)
    restored = rl.restore(image, psf=psf, progress=True)

Built in: ``raw`` (identity baseline), ``rl`` (classic Richardson–Lucy), ``rl-biggs``
(Biggs–Andrews accelerated RL), ``wb-rl`` (Wiener–Butterworth RL), ``gaussian`` (denoising
baseline), ``network`` (any trained model folder) and ``isotropic`` (CARE's self-supervised
isotropic restoration). ``lucyd bench`` and ``lucyd demo`` enumerate their methods here.

Adding a method (e.g. the N2V / CARE denoisers): in the module that implements it, write its
config (a ``JobConfig`` subclass whose defaults are the documented defaults) and decorate a
function ``func(image, cfg, *, psf, voxel_size, progress, cache)`` with
:func:`register_method`; then add that module to :data:`METHOD_MODULES` below so that
importing :mod:`lucyd.methods` registers it. ``progress`` is the bool to hand to the parts'
own ``progress=`` arguments: their loops report to the caller's callback and honour its cancel
request through :mod:`lucyd.progress`.
"""

from __future__ import annotations

import importlib

from lucyd.boundaries import deconv_boundary, forward_boundary
from lucyd.methods.registry import (
    TASKS,
    Method,
    Restorer,
    available_methods,
    build_method,
    get_method,
    register_method,
)

#: modules whose import registers methods (the plug point for new ones)
METHOD_MODULES = ("lucyd.methods.classical", "lucyd.methods.learned")

for _module in METHOD_MODULES:
    importlib.import_module(_module)

__all__ = [
    "METHOD_MODULES",
    "TASKS",
    "Method",
    "Restorer",
    "available_methods",
    "build_method",
    "deconv_boundary",
    "forward_boundary",
    "get_method",
    "register_method",
]
