"""lucyd: physics-informed restoration of fluorescence microscopy images.

The top-level names are imported lazily so that ``import lucyd`` (and the CLI's
``--help``) stays fast; each lives in the sub-package that names its part of the
system: :mod:`lucyd.io`, :mod:`lucyd.psf`, :mod:`lucyd.forward`, :mod:`lucyd.deconv`,
:mod:`lucyd.tiling`, :mod:`lucyd.synth`, :mod:`lucyd.nets`, :mod:`lucyd.train`,
:mod:`lucyd.metrics`, :mod:`lucyd.report`.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import PackageNotFoundError, version

# torch's CPU threads (GNU OpenMP) spin for a while after every parallel region; on a machine with
# few cores the spinning threads take the cores from the FFT workers (pocketfft) that run between
# torch's elementwise passes in Richardson–Lucy, and from other processes: on the 2-core project
# machine RL iterations took ~2× and RLN inference 1.4–2.6× longer than with passive waiting
# (benchmarks/results/deconv.md). Effective only when lucyd is imported before torch (as the CLI
# does); a value set by the user is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("lucyd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

_LAZY = {
    "read_image": "lucyd.io",
    "write_image": "lucyd.io",
    "ImageMetadata": "lucyd.io",
    "deconvolve": "lucyd.deconv",
    "load_model": "lucyd.train",
    "LucydError": "lucyd.errors",
    "InputError": "lucyd.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lucyd' has no attribute {name!r}")
