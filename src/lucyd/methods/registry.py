"""The restorer registry: every restoration method behind one call signature.

A method is a function ``func(image, config, *, psf, voxel_size, progress, cache) -> ndarray``
registered with
its pydantic parameter schema (a :class:`lucyd.config.JobConfig`), as torchvision registers
its models::

    @register_method("rl", config=RLConfig, task="deconvolution", needs_psf=True)
    def richardson_lucy(image, cfg, *, psf, voxel_size, progress, cache): ...

Users never call ``func`` directly: :func:`build_method` validates the parameters once and
returns a :class:`Restorer` whose :meth:`Restorer.restore` checks the image (and PSF), sets up
progress reporting and cancellation (:mod:`lucyd.progress`) and returns float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ValidationError

from lucyd.config import JobConfig, validation_message
from lucyd.errors import InputError
from lucyd.progress import as_reporter, reporting
from lucyd.validation import as_image, as_voxel_size

__all__ = ["Method", "Restorer", "available_methods", "build_method", "get_method",
           "register_method", "TASKS"]

#: what a method does (``available_methods(task=...)`` filters on it)
TASKS = ("identity", "deconvolution", "denoising", "network", "isotropic")

_REGISTRY: dict[str, Method] = {}


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered restoration method.

    Attributes
    ----------
    name : str
        Registry name (lower case, e.g. ``"wb-rl"``).
    config : type[JobConfig]
        Parameter schema; its defaults are the method's documented defaults.
    func : callable
        ``func(image, cfg, *, psf, voxel_size, progress, cache) -> ndarray``: ``image`` float32
        and validated, ``psf`` as given (or None; present when ``needs_psf``): the method
        prepares it once (:func:`lucyd.deconv.prepare_psf`, as ``deconvolve`` does),
        ``progress`` a bool for the parts' own ``progress=`` argument (the active
        :mod:`lucyd.progress` reporter receives their steps), ``cache`` a dict kept by the
        :class:`Restorer` between calls (a loaded model).
    task : str
        One of :data:`TASKS`.
    needs_psf : bool
        The method needs ``psf=`` at restore time.
    label : str
        Short display name (tables, figure panels).
    describe : callable
        ``describe(cfg) -> str``: its parameters in a few words (benchmark tables).
    changes_shape : bool
        The output shape differs from the input's (isotropic restoration resamples z).
    """

    name: str
    config: type[JobConfig]
    func: Callable[..., np.ndarray]
    task: str
    needs_psf: bool = False
    label: str = ""
    describe: Callable[[Any], str] = dataclasses.field(default=lambda cfg: "")
    changes_shape: bool = False

    @property
    def summary(self) -> str:
        """First line of the method's docstring."""
        doc = (self.func.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def register_method(name: str, *, config: type[JobConfig], task: str, needs_psf: bool = False,
                    label: str = "", describe: Callable[[Any], str] | None = None,
                    changes_shape: bool = False):
    """Decorator registering ``func(image, cfg, *, psf, voxel_size, progress, cache)`` as ``name``.

    Raises
    ------
    ValueError
        A name already registered, an unknown task or a config that is not a JobConfig
        (programming errors, at import time).
    """
    key = name.lower()
    if task not in TASKS:
        raise ValueError(f"register_method({name!r}): unknown task {task!r}")
    if not (isinstance(config, type) and issubclass(config, JobConfig)):
        raise ValueError(f"register_method({name!r}): config must be a JobConfig subclass")

    def decorator(func):
        if key in _REGISTRY:
            raise ValueError(f"method {key!r} is already registered")
        _REGISTRY[key] = Method(key, config, func, task, needs_psf, label or key,
                                describe or (lambda cfg: ""), changes_shape)
        return func

    return decorator


def available_methods(task: str | None = None) -> list[str]:
    """Registered method names (sorted), optionally only those of one ``task``."""
    return sorted(n for n, m in _REGISTRY.items() if task is None or m.task == task)


def get_method(name: str) -> Method:
    """The registered :class:`Method` called ``name`` (case-insensitive).

    Raises
    ------
    InputError
        Unknown name (the message lists the available ones).
    """
    key = str(name).lower()
    if key not in _REGISTRY:
        raise InputError(f"method: unknown method {name!r}; available: "
                         f"{', '.join(available_methods())}")
    return _REGISTRY[key]


def build_method(name: str, **params: Any) -> Restorer:
    """A ready :class:`Restorer`: ``name``'s parameters validated by its config schema.

    Raises
    ------
    InputError
        Unknown method, or an invalid / unknown parameter (one line naming it).
    """
    method = get_method(name)
    try:
        cfg = method.config(**params)
    except ValidationError as exc:
        raise InputError(validation_message(exc, f"method {method.name}")) from None
    return Restorer(method, cfg)


class Restorer:
    """A method with validated parameters: ``restorer.restore(image, psf=..., voxel_size=...)``.

    Attributes
    ----------
    method : Method
    config : JobConfig
        The validated parameters (``config.save(path)`` records them beside an output).
    label : str
        Display name; the method's label unless changed (e.g. ``"RLN"`` for a network).
    """

    def __init__(self, method: Method, config: JobConfig):
        self.method = method
        self.config = config
        self.label = method.label
        self.cache: dict[str, Any] = {}  # per-restorer state (a loaded model)

    def __repr__(self) -> str:
        return f"Restorer({self.method.name!r}, {self.config!r})"

    @property
    def name(self) -> str:
        return self.method.name

    def describe(self) -> str:
        """The parameters in a few words (e.g. ``"20 it., flipped PSF, non-circulant"``)."""
        return self.method.describe(self.config) if self.method.describe else ""

    def restore(self, image, *, psf=None, voxel_size=None, progress: Any = None,
                cancel: Any = None) -> np.ndarray:
        """Restore ``image``.

        Parameters
        ----------
        image : array_like
            (y, x) or (z, y, x), finite.
        psf : array_like, optional
            Required by deconvolution methods (``method.needs_psf``); same dimensionality.
        voxel_size : sequence of float, optional
            µm per axis, (z, y, x) order; used by methods that need physical sampling
            (isotropic restoration takes its z factor from it).
        progress : None, bool, callable or :class:`lucyd.progress.Reporter`
            None / False: silent; True: tqdm bars; ``callback(done, total, desc)`` per
            iteration, block, tile or training step.
        cancel : threading.Event or callable, optional
            When set, the work stops at its next step with :class:`lucyd.progress.Cancelled`.

        Returns
        -------
        numpy.ndarray
            float32, in the image's intensity scale; the image's shape unless
            ``method.changes_shape``.

        Raises
        ------
        InputError
            Bad image, missing or bad PSF, bad voxel size.
        """
        arr = as_image(image, name="image", dtype=np.float32)
        if self.method.needs_psf:
            if psf is None:
                raise InputError(f"psf: method {self.name!r} needs a PSF")
            # validated and prepared by the method, once (lucyd.deconv.psfprep.prepare_psf)
        if voxel_size is not None:
            voxel_size = as_voxel_size(voxel_size, arr.ndim)
        reporter = as_reporter(progress, cancel)
        with reporting(reporter):
            if reporter is not None:
                reporter.check()
            out = self.method.func(arr, self.config, psf=psf, voxel_size=voxel_size,
                                   progress=reporter is not None, cache=self.cache)
        out = np.asarray(out, dtype=np.float32)
        if not self.method.changes_shape and out.shape != arr.shape:
            raise RuntimeError(f"method {self.name!r} returned shape {out.shape} for an image of "
                               f"shape {arr.shape}")
        return out
