"""Shared fixtures: seeded RNG, the real-data folder (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("LUCYD_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def real_file(*parts: str) -> Path:
    """Path of a file under ../shared/data/real, or skip the test saying what is missing."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Training tiny networks is much faster single-threaded on a shared 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def real_data():
    return real_file


def pytest_addoption(parser, pluginmanager):
    """pytest-qt imports Qt's GUI modules when pytest starts: where they cannot load, it is blocked
    here (before it configures) so that the rest of the suite runs and the napari tests skip."""
    from _qt_display import qt_unavailable

    if pluginmanager.has_plugin("pytestqt") and qt_unavailable():
        pluginmanager.unregister(name="pytestqt")
        pluginmanager.set_blocked("pytestqt")
