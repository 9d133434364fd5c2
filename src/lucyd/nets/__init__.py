"""Restoration networks as ``torch.nn.Module``s, found by name in one registry.

Importing this package registers every network; each module ``lucyd.nets.<name>`` ends with
its :class:`NetworkSpec` (recipe, loss, size multiple, receptive radius); see
:mod:`lucyd.nets.registry`. Adding a network means writing ``lucyd/nets/<name>.py``: every
module of this package except the helpers is imported here.
"""

import importlib
import pkgutil

from lucyd.nets.registry import (
    NetworkSpec,
    all_specs,
    available_networks,
    build_network,
    count_parameters,
    get_network,
    get_spec,
    register,
    register_spec,
)

#: modules of this package that hold no network
_HELPERS = {"registry", "layers", "wavelets"}

# importing a network module registers its NetworkSpec; every other module of the package is one
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _HELPERS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "NetworkSpec",
    "register_spec",
    "register",
    "get_spec",
    "all_specs",
    "build_network",
    "get_network",
    "available_networks",
    "count_parameters",
]
