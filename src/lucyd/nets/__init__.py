"""Restoration networks as ``torch.nn.Module``s, found by name in one registry.

Importing this package registers every network; see :mod:`lucyd.nets.registry`.
"""

from lucyd.nets import care, ddn, rbcr, rcan, rln  # noqa: F401  (registration side effect)
from lucyd.nets.registry import (
    available_networks,
    build_network,
    count_parameters,
    get_network,
    register,
)

__all__ = ["register", "build_network", "get_network", "available_networks", "count_parameters"]
