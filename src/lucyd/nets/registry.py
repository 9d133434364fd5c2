"""One registry of restoration networks, found by name.

A network module decorates its ``nn.Module`` class with ``@register("name")``; users
and the trainer build one with ``build_network("name", **kwargs)``. Registered
classes must accept ``ndim`` (2 or 3) as a keyword and expose a class attribute
``size_multiple`` (int): the input size along every spatial axis must be a multiple of
it (prediction pads to it and crops back).
"""

from __future__ import annotations

from torch import nn

from lucyd.errors import InputError

_REGISTRY: dict[str, type[nn.Module]] = {}


def register(name: str):
    """Class decorator adding a network to the registry under ``name``."""

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise RuntimeError(f"network name {name!r} registered twice")
        _REGISTRY[key] = cls
        cls.registry_name = key
        return cls

    return decorator


def available_networks() -> list[str]:
    """Names of all registered networks."""
    import lucyd.nets  # noqa: F401  (importing the package registers every network)

    return sorted(_REGISTRY)


def get_network(name: str) -> type[nn.Module]:
    """The network class registered as ``name``."""
    names = available_networks()
    key = str(name).lower()
    if key not in _REGISTRY:
        raise InputError(f"model: unknown network {name!r}; available: {', '.join(names)}")
    return _REGISTRY[key]


def build_network(name: str, **kwargs) -> nn.Module:
    """Instantiate the network registered as ``name`` with ``kwargs``."""
    cls = get_network(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"model {name!r}: invalid parameters ({exc})") from None


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
