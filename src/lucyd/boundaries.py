"""The two boundary vocabularies of lucyd, and the one mapping between them.

``boundary`` says what the object is assumed to be outside the field of view. The image
formation model (:func:`lucyd.forward.convolve`) and the deconvolution
(:func:`lucyd.deconv.deconvolve`) name their choices differently because they are different
questions: the forward model must *assume* a value outside, the deconvolution may instead
*estimate* it.

================  ==================  =================================================
forward           deconv              object outside the field of view
================  ==================  =================================================
``"circulant"``   ``"circulant"``     periodic (FFT wrap-around)
``"linear"``      ``"zero"``          zero (linear convolution, cropped to the image)
``"reflect"``     (none)              mirrored about the edge
(none)            ``"non-circulant"`` unknown: estimated on a job padded to image + PSF − 1,
                                      Bertero–Boccacci weights (deconv's default)
================  ==================  =================================================

The deconvolution model of ``"non-circulant"`` is simulated in the forward direction by
convolving a larger object with ``"linear"`` and cropping to the field of view.

:func:`deconv_boundary` and :func:`forward_boundary` accept either spelling where it has a
counterpart and raise :class:`~lucyd.errors.InputError` naming the choices where it has none;
:func:`lucyd.deconv.deconvolve`, :func:`lucyd.forward.convolve` and the restorer registry's
configurations pass their ``boundary`` argument through them. (A core module: the physics and
the algorithms both import it.)
"""

from __future__ import annotations

from lucyd.errors import InputError

__all__ = ["BOUNDARY_TABLE", "DECONV_BOUNDARIES", "FORWARD_BOUNDARIES", "deconv_boundary",
           "forward_boundary"]

#: the one vocabulary: (forward name, deconv name, what the object is outside the field of view);
#: None where one side has no such assumption. Every tuple of names below is derived from it.
BOUNDARY_TABLE: tuple[tuple[str | None, str | None, str], ...] = (
    ("circulant", "circulant", "periodic (FFT wrap-around)"),
    ("reflect", None, "mirrored about the edge"),
    ("linear", "zero", "zero"),
    (None, "non-circulant", "unknown, estimated on a padded job (Bertero weights)"),
)

#: lucyd.deconv's names (``lucyd.deconv.BOUNDARIES``), its default first
DECONV_BOUNDARIES = tuple(d for _, d, _ in sorted(BOUNDARY_TABLE, key=lambda row: row[0] is not None)
                          if d is not None)
#: lucyd.forward's names (``lucyd.forward.BOUNDARIES``)
FORWARD_BOUNDARIES = tuple(f for f, _, _ in BOUNDARY_TABLE if f is not None)

#: forward name -> deconv name, for the assumptions both vocabularies have
_FORWARD_TO_DECONV = {f: d for f, d, _ in BOUNDARY_TABLE if f is not None and d is not None}
_DECONV_TO_FORWARD = {v: k for k, v in _FORWARD_TO_DECONV.items()}


def deconv_boundary(name: str, argument: str = "boundary") -> str:
    """The deconvolution spelling of ``name`` (``"linear"`` -> ``"zero"``; deconv names unchanged).

    Raises
    ------
    InputError
        A name with no deconvolution counterpart (``"reflect"``) or an unknown one.
    """
    key = str(name).lower() if isinstance(name, str) else name
    if key in DECONV_BOUNDARIES:
        return key
    if key in _FORWARD_TO_DECONV:
        return _FORWARD_TO_DECONV[key]
    if key in FORWARD_BOUNDARIES:
        raise InputError(f"{argument}: {name!r} has no deconvolution counterpart; choose one of "
                         f"{', '.join(DECONV_BOUNDARIES)} (or 'linear' = 'zero')")
    raise InputError(f"{argument}: unknown value {name!r}; choose one of "
                     f"{', '.join(DECONV_BOUNDARIES)} (or 'linear' = 'zero')")


def forward_boundary(name: str, argument: str = "boundary") -> str:
    """The forward-model spelling of ``name`` (``"zero"`` -> ``"linear"``; forward names unchanged).

    Raises
    ------
    InputError
        ``"non-circulant"`` (the object is estimated, not assumed; simulate it with a larger
        object and ``"linear"``) or an unknown name.
    """
    key = str(name).lower() if isinstance(name, str) else name
    if key in FORWARD_BOUNDARIES:
        return key
    if key in _DECONV_TO_FORWARD:
        return _DECONV_TO_FORWARD[key]
    if key in DECONV_BOUNDARIES:
        raise InputError(f"{argument}: {name!r} has no forward-model counterpart; choose one of "
                         f"{', '.join(FORWARD_BOUNDARIES)} (or 'zero' = 'linear'); "
                         "'non-circulant' is simulated by blurring a larger object with 'linear' "
                         "and cropping")
    raise InputError(f"{argument}: unknown value {name!r}; choose one of "
                     f"{', '.join(FORWARD_BOUNDARIES)} (or 'zero' = 'linear')")
