"""One registry of restoration networks: a :class:`NetworkSpec` per network, found by name.

Each network module ends with one ``register_spec(NetworkSpec(...))`` call (in the spirit of
torchvision's ``register_model`` + weights metadata): the ``nn.Module`` class, its training
recipe in :class:`lucyd.train.TrainConfig`'s own field names, its default loss and any loss of
its own, its size multiple, its receptive radius, the dimensionalities it supports and the
paper. Adding a network means writing one file ``lucyd/nets/<name>.py`` that ends with such a
call (and importing it in ``lucyd/nets/__init__.py``).

Users and the trainer build a network with ``build_network("name", **kwargs)``. Registered
classes accept ``ndim`` (2 or 3) as a keyword; the registration sets the class attributes
``size_multiple`` (the input size along every spatial axis must be a multiple of it; an
instance may override it when it depends on the parameters, e.g. CARE's depth) and
``receptive_radius`` from the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from lucyd.errors import InputError

#: a training loss: ``loss(net, x, y) -> (scalar loss, prediction (B, 1, ...))``
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class NetworkSpec:
    """Everything lucyd knows about one network, in one place.

    Attributes
    ----------
    name : str
        Registry name (lower case), e.g. ``"rln"``.
    network : type
        The ``nn.Module`` class; built as ``network(ndim=..., **kwargs)``.
    recipe : mapping
        Published training recipe in :class:`lucyd.train.TrainConfig` field names (``loss``,
        ``lr``, ``schedule``, ``lr_decay``, ``lr_decay_steps``, ``batch``, ``patch_rejection``,
        ``rejection_threshold``, ``norm_percentiles``, ``augment``, ``same_image_batch``);
        fields it omits take :data:`lucyd.train.config.GENERIC_DEFAULTS`.
    losses : mapping of str to LossFn
        Losses that belong to this network (``loss(net, x, y) -> (loss, prediction)``),
        registered with the trainer's losses under these names.
    size_multiple : int
        Every spatial input size must be a multiple of this (default parameters).
    receptive_radius : int or None
        Receptive-field half-width per axis in voxels (default parameters); None: derived
        from the instance's ``receptive_field`` or measured (:func:`lucyd.train.receptive_radius`).
    ndims : tuple of int
        Supported spatial dimensionalities.
    reference : str
        The paper the network and recipe come from.
    doi : str
        That paper's DOI (cited by exported bioimage.io packages); empty when it has none.
    """

    name: str
    network: type[nn.Module]
    recipe: Mapping[str, Any] = field(default_factory=dict)
    losses: Mapping[str, LossFn] = field(default_factory=dict)
    size_multiple: int = 1
    receptive_radius: int | None = None
    ndims: tuple[int, ...] = (2, 3)
    reference: str = ""
    doi: str = ""

    def __post_init__(self):
        object.__setattr__(self, "name", self.name.lower())
        object.__setattr__(self, "recipe", MappingProxyType(dict(self.recipe)))
        object.__setattr__(self, "losses", MappingProxyType(dict(self.losses)))

    @property
    def loss(self) -> str | None:
        """The recipe's loss name."""
        return self.recipe.get("loss")


_SPECS: dict[str, NetworkSpec] = {}


def register_spec(spec: NetworkSpec) -> NetworkSpec:
    """Add ``spec`` to the registry (sets ``size_multiple`` / ``receptive_radius`` on its class)."""
    if spec.name in _SPECS and _SPECS[spec.name].network is not spec.network:
        raise RuntimeError(f"network name {spec.name!r} registered twice")
    cls = spec.network
    cls.registry_name = spec.name
    cls.size_multiple = int(spec.size_multiple)
    if spec.receptive_radius is not None:
        cls.receptive_radius = int(spec.receptive_radius)
    _SPECS[spec.name] = spec
    return spec


def register(name: str, **spec_fields):
    """Class decorator registering a network with a minimal :class:`NetworkSpec`.

    Convenience for small or experimental networks (tests); ``size_multiple`` and
    ``receptive_radius`` default to the class attributes when present.
    """

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        fields = dict(spec_fields)
        fields.setdefault("size_multiple", int(getattr(cls, "size_multiple", 1)))
        declared = getattr(cls, "receptive_radius", None)
        if declared is not None and not isinstance(declared, property):
            fields.setdefault("receptive_radius", declared)
        register_spec(NetworkSpec(name=name, network=cls, **fields))
        return cls

    return decorator


def available_networks() -> list[str]:
    """Names of all registered networks."""
    import lucyd.nets  # noqa: F401  (importing the package registers every network)

    return sorted(_SPECS)


def get_spec(name: str) -> NetworkSpec:
    """The :class:`NetworkSpec` registered as ``name`` (case-insensitive)."""
    names = available_networks()
    key = str(name).lower()
    if key not in _SPECS:
        raise InputError(f"model: unknown network {name!r}; available: {', '.join(names)}")
    return _SPECS[key]


def all_specs() -> list[NetworkSpec]:
    """Every registered :class:`NetworkSpec`, by name."""
    return [_SPECS[n] for n in available_networks()]


def get_network(name: str) -> type[nn.Module]:
    """The network class registered as ``name``."""
    return get_spec(name).network


def build_network(name: str, **kwargs) -> nn.Module:
    """Instantiate the network registered as ``name`` with ``kwargs``."""
    spec = get_spec(name)
    ndim = kwargs.get("ndim")
    if ndim is not None and ndim in (2, 3) and int(ndim) not in spec.ndims:
        raise InputError(f"model {name!r}: supports {spec.ndims}D images, not {ndim}D")
    try:
        return spec.network(**kwargs)
    except TypeError as exc:
        raise InputError(f"model {name!r}: invalid parameters ({exc})") from None


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
