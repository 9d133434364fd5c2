"""Readers under fuzzing (issue 15.13): truncated or corrupted TIFF, OME-TIFF, OME-Zarr and .npy
files give a FileFormatError naming the file — never another exception, a traceback or a hang.

Property tests (hypothesis), bounded so the file runs in seconds: a fixed number of examples per
format and a deadline per example.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucyd.errors import FileFormatError
from lucyd.io import ImageMetadata, image_info, read_image, write_image

FUZZ = settings(max_examples=40, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
VOLUME = (np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5) - 7.5) / 3
META = ImageMetadata("ZYX", (0.3, 0.13, 0.13))


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _read_everything(path: Path) -> None:
    """What a command does with an input: header, lazy view, full read."""
    image_info(path)
    lazy, _ = read_image(path, lazy=True)
    np.asarray(lazy[...])
    data, _ = read_image(path)
    np.asarray(data)


def _check(path: Path) -> None:
    """Reading either works or raises FileFormatError naming ``path``; within 10 s."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        _read_everything(path)
    except FileFormatError as exc:
        assert str(path) in str(exc) or path.name in str(exc), str(exc)
    except _Hang:
        pytest.fail(f"reading {path} hung")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _mutate(data: bytes, cut: float | None, flips: list[tuple[float, int]]) -> bytes:
    buf = bytearray(data)
    for where, value in flips:
        buf[int(where * (len(buf) - 1))] = value
    if cut is not None:
        buf = buf[: int(cut * len(buf))]
    return bytes(buf)


mutations = st.tuples(
    st.one_of(st.none(), st.floats(0.0, 1.0, exclude_max=True)),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6),
).filter(lambda m: m[0] is not None or m[1])


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("originals")
    out = {}
    for name in ("plain.tif", "meta.ome.tif", "array.npy", "image.ome.zarr"):
        write_image(root / name, VOLUME, META)
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", ["plain.tif", "meta.ome.tif", "array.npy"])
@given(mutation=mutations)
@FUZZ
def test_corrupted_file_gives_a_file_format_error(name, mutation, originals, tmp_path):
    path = tmp_path / name
    path.write_bytes(_mutate(originals[name].read_bytes(), *mutation))
    _check(path)


@given(mutation=mutations, target=st.sampled_from(["zarr.json", "0/zarr.json", "chunk"]))
@FUZZ
def test_corrupted_zarr_gives_a_file_format_error(mutation, target, originals, tmp_path):
    path = tmp_path / "image.ome.zarr"
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(originals["image.ome.zarr"], path)
    if target == "chunk":
        chunks = sorted(p for p in (path / "0").rglob("*") if p.is_file() and p.name != "zarr.json")
        victim = chunks[0]
    else:
        victim = path / target
    victim.write_bytes(_mutate(victim.read_bytes(), *mutation))
    _check(path)


def test_npy_sidecar_corruption_is_a_file_format_error(originals, tmp_path):
    shutil.copy(originals["array.npy"], tmp_path / "a.npy")
    for text in ("{", "[]", '{"axes": 5}', '{"voxel_size": "x"}', '{"voxel_size": [-1, 0, 1]}'):
        (tmp_path / "a.npy.json").write_text(text)
        _check(tmp_path / "a.npy")
