"""The one home of the pipelines' presets: budgets of ``lucyd demo`` and ``lucyd bench``, the
synthetic samples they image and the networks' default keyword arguments.

Both pipelines read these tables (the benchmark reuses the demo's samples and network
arguments so that the two report comparable numbers).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BENCH_PRESETS", "DEMO_PRESETS", "NET_DEFAULTS", "SAMPLE_DEFAULTS", "psf_model_name"]

#: phantom parameters of the test sample by kind (counts are per 128^3 voxels: these give a
#: field of view well filled with structures; the phantom defaults are sparser). Tubules get a
#: cross-section sigma of 1 px (0.1 µm): thinner ones are so far below the resolution that the
#: raw image hardly correlates with them and every score is dominated by the background.
SAMPLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tubules": {"n_tubules": 100, "width": 1.0},
    "granules": {"n_clusters": 30, "n_isolated": 180},
    "nuclei": {},
}

#: network keyword arguments used by the demo and the benchmark when none are given: the
#: reference RLN (Keras batch-norm momentum 0.99; the trainer re-estimates the batch-norm
#: statistics exactly before every validation and checkpoint, so a short training needs no
#: faster moving average)
NET_DEFAULTS: dict[str, dict[str, Any]] = {"rln": {}}

#: ``lucyd demo``: default (10 min class on a 2-core CPU) and quick (2 min class) budgets
DEMO_PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "sample_shape": (32, 128, 128),
        "train_n": 8,
        "train_shape": (32, 96, 96),
        "train_steps": 250,
        "patch": (32, 32, 32),
        "batch": 4,
        "val_interval": 50,
        "train_minutes": None,
    },
    "quick": {
        "sample_shape": (24, 96, 96),
        "train_n": 4,
        "train_shape": (24, 64, 64),
        "train_steps": 80,
        "patch": (16, 32, 32),
        "batch": 4,
        "val_interval": 40,
        "train_minutes": None,
    },
}

#: ``lucyd bench``: full (≤ ~30 min on a 2-core CPU) and quick (a few minutes) budgets
BENCH_PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "shape": (32, 128, 128),
        "breaks_shape": (32, 96, 96),
        "photon_series": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 50.0),
        "na_series": (0.7, 0.9, 1.1, 1.25, 1.4),
        "networks": ("rln", "ddn", "care"),
        "train_n": 8,
        "train_shape": (32, 96, 96),
        "train_steps": 150,
        "patch": (32, 32, 32),
        "batch": 4,
        "val_interval": 25,
        "train_minutes": 3.0,
        "dapi_network": True,
        "w2s_care_steps": 150,
    },
    "quick": {
        "shape": (24, 64, 64),
        "breaks_shape": (24, 64, 64),
        "photon_series": (0.01, 0.1, 1.0, 10.0, 50.0),
        "na_series": (0.8, 1.1, 1.4),
        "networks": ("rln",),
        "train_n": 3,
        "train_shape": (24, 64, 64),
        "train_steps": 20,
        "patch": (16, 32, 32),
        "batch": 4,
        "val_interval": 10,
        "train_minutes": 1.0,
        "dapi_network": False,
        "w2s_care_steps": 0,
    },
}


def psf_model_name(model: str) -> str:
    """Display name of a PSF model (``"born-wolf"`` -> ``"Born–Wolf"``)."""
    return {"born-wolf": "Born–Wolf", "gibson-lanni": "Gibson–Lanni", "vectorial": "vectorial",
            "gaussian": "Gaussian"}.get(model, model)
