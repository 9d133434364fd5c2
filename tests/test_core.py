import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lucyd.config import JobConfig
from lucyd.device import resolve_device
from lucyd.errors import FileFormatError, InputError
from lucyd.io.atomic import atomic_path
from lucyd.validation import as_image, as_voxel_size, parse_int_tuple


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.tif"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".tif" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_path_for_folders(tmp_path):
    target = tmp_path / "img.zarr"
    target.mkdir()
    (target / "old").write_text("x")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.zarr"]


def test_validation_messages():
    assert as_image(np.ones((3, 4), np.uint16)).dtype == np.float32
    with pytest.raises(InputError, match="non-finite"):
        as_image(np.array([[1.0, np.inf]]))
    with pytest.raises(InputError, match="empty"):
        as_image(np.zeros((0, 3)))
    assert as_voxel_size(0.1, 3) == (0.1, 0.1, 0.1)
    assert as_voxel_size((0.3, 0.1, 0.1), 2) == (0.1, 0.1)
    with pytest.raises(InputError, match="positive"):
        as_voxel_size((0.1, -1), 2)
    assert parse_int_tuple("33,65,65", "shape") == (33, 65, 65)
    with pytest.raises(InputError, match="shape"):
        parse_int_tuple("a,b", "shape")


def test_device_selection():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(InputError):
        resolve_device("tpu")


class _Cfg(JobConfig):
    iterations: int = 10
    name: str = "x"


def test_config_round_trip_and_errors(tmp_path):
    cfg = _Cfg(iterations=3)
    path = cfg.save(tmp_path / "config.json")
    payload = json.loads(path.read_text())
    assert payload["config"]["iterations"] == 3 and "lucyd_version" in payload
    assert _Cfg.load(path) == cfg
    with pytest.raises(FileFormatError):
        _Cfg.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"config": {"iterations": "many"}}))
    with pytest.raises(InputError, match="iterations"):
        _Cfg.load(tmp_path / "bad.json")


def test_cli_help_lists_commands():
    from lucyd.cli.main import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "lucyd" in result.output.lower()
