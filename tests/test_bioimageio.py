"""bioimage.io packages: lucyd export, `bioimageio test`, lucyd predict with packages."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import ndimage
from typer.testing import CliRunner

pytest.importorskip("bioimageio.core")

import lucyd  # noqa: E402
from lucyd.cli.main import app  # noqa: E402
from lucyd.errors import FileFormatError, InputError  # noqa: E402
from lucyd.export.bioimageio import (  # noqa: E402
    export_bioimageio,
    is_bioimageio_package,
    load_lucyd_package,
    predict_package_file,
)
from lucyd.export.bioimageio.export import axis_scales, input_geometry  # noqa: E402
from lucyd.io import ImageMetadata, read_image, write_image  # noqa: E402
from lucyd.train import TrainConfig, load_model, train  # noqa: E402

runner = CliRunner()


def _dataset(root: Path, shape=(48, 48), n=3, voxel=(0.1, 0.1)) -> Path:
    """Blurred, Poisson-noisy spots (raw) and the sharp spots (gt)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        gt = np.zeros(shape, np.float32)
        idx = tuple(rng.integers(0, s, size=math.prod(shape) // 60) for s in shape)
        gt[idx] = rng.uniform(50, 300, size=len(idx[0]))
        gt = ndimage.gaussian_filter(gt, 0.7) + 10
        raw = rng.poisson(ndimage.gaussian_filter(gt, 1.5)).astype(np.float32)
        meta = ImageMetadata.for_array(raw, voxel)
        write_image(root / "raw" / f"{i:04d}.tif", raw, meta)
        write_image(root / "gt" / f"{i:04d}.tif", gt.astype(np.float32), meta)
    (root / "dataset.json").write_text(json.dumps({"kind": "test", "n": n}))
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory, one_thread):
    """A 2D RLN trained for 2 steps and its package, written by `lucyd export --no-test`."""
    root = tmp_path_factory.mktemp("bioimageio")
    data = _dataset(root / "data")
    cfg = TrainConfig.build(model="rln", patch=(16, 16), batch=2, steps=2, val_interval=2,
                            val_patches=2, device="cpu", seed=0)
    model_dir = train(cfg, data, root / "model")
    package = root / "rln2d.zip"
    res = runner.invoke(app, ["export", str(model_dir), "-o", str(package), "--no-test",
                              "--author", "Test Author"])
    assert res.exit_code == 0, res.output
    return model_dir, package


def _read(package: Path, name: str) -> bytes:
    with zipfile.ZipFile(package) as zf:
        return zf.read(name)


def _npy(package: Path, name: str) -> np.ndarray:
    return np.load(io.BytesIO(_read(package, name)))


# ------------------------------------------------------------------ the package and its test


@pytest.mark.slow  # a fresh interpreter imports bioimageio.core and lucyd (about 10 s of CPU)
def test_exported_package_passes_bioimageio_test(exported, tmp_path):
    """The Done-when of issue 14: `bioimageio test model.zip` (bioimageio.core's CLI) passes."""
    _, package = exported
    src = str(Path(lucyd.__file__).parents[1])  # the lucyd under test, for the state-dict import
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    summary = tmp_path / "summary.json"
    res = subprocess.run(
        [sys.executable, "-m", "bioimageio.core", "test", str(package), "--summary", str(summary)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    report = json.loads(summary.read_text())
    assert report["status"] == "passed"
    status = {d["name"]: d["status"] for d in report["details"]}
    for weights in ("torchscript", "pytorch_state_dict"):  # each format reproduces lucyd's output
        assert status[f"Reproduce test outputs from test inputs ({weights})"] == "passed"
    assert set(status.values()) == {"passed"}


def test_package_describes_the_model(exported):
    """Axes, halo, normalisation, weights and test tensors say what the model folder does."""
    model_dir, package = exported
    rdf = yaml.safe_load(_read(package, "rdf.yaml"))
    model = load_model(model_dir)
    card = json.loads((model_dir / "model.json").read_text())
    # geometry: step = size multiple (RLN: 2), halo = receptive radius (18), min > 2·halo
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    space_in = [a for a in inp["axes"] if a["type"] == "space"]
    assert [a["id"] for a in space_in] == ["y", "x"]
    assert all(a["size"] == {"min": 38, "step": 2} for a in space_in)
    assert [a["halo"] for a in out["axes"] if a["type"] == "space"] == [18, 18]
    assert input_geometry(model) == ((38, 38), 2, (18, 18))
    assert all(a["unit"] == "nanometer" and a["scale"] == 100.0 for a in space_in)  # 0.1 µm
    # normalisation: scale_range with the card's percentiles over channel + space (per sample)
    (scale_range,) = [p for p in inp["preprocessing"] if p["id"] == "scale_range"]
    assert scale_range["kwargs"]["min_percentile"] == card["normalization"]["percentiles"][0]
    assert scale_range["kwargs"]["max_percentile"] == card["normalization"]["percentiles"][1]
    assert scale_range["kwargs"]["axes"] == ["channel", "y", "x"]
    (gain,) = [p for p in out["postprocessing"] if p["id"] == "scale_linear"]
    assert gain["kwargs"]["gain"] == pytest.approx(model.output_ratio)
    # test tensors: lucyd's prediction of the test input in the input's normalised units,
    # recomputed here with numpy's percentiles
    x, y = _npy(package, "test_input.npy"), _npy(package, "test_output.npy")
    assert x.shape[:2] == (1, 1) and y.shape == x.shape and x.dtype == np.float32
    lo, hi = np.percentile(x[0, 0].astype(np.float64), card["normalization"]["percentiles"])
    expected = (model.predict(x[0, 0], progress=False) - lo) / (hi - lo)
    np.testing.assert_allclose(y[0, 0], expected, rtol=1e-5, atol=1e-5)
    # the record: model card attached unchanged, the paper cited by DOI, authors
    assert json.loads(_read(package, "model.json")) == card
    assert rdf["cite"][0]["doi"] == "10.1038/s41592-022-01652-7"
    assert rdf["authors"] == [{"name": "Test Author"}]
    assert rdf["config"]["lucyd"]["state_dict"] == "weights.pt"
    # both weight formats compute the network on another valid shape (40 × 42)
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (arch["import_from"], arch["callable"]) == ("lucyd.nets.rln", "RLN")
    rebuilt = getattr(__import__(arch["import_from"], fromlist=["_"]), arch["callable"])(
        **arch["kwargs"])
    rebuilt.load_state_dict(torch.load(io.BytesIO(_read(package, "weights.pt")),
                                       weights_only=True))
    script = torch.jit.load(io.BytesIO(_read(package, "weights_torchscript.pt")))
    probe = torch.from_numpy(np.random.default_rng(3).random((1, 1, 40, 42), dtype=np.float32))
    with torch.no_grad():
        want = model.net(probe)
        np.testing.assert_allclose(script(probe).numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rebuilt.eval()(probe).numpy(), want.numpy(), rtol=1e-4,
                                   atol=1e-5)


# ------------------------------------------------------------------ lucyd predict with packages


def test_predict_with_lucyds_package_equals_its_model_folder(exported, tmp_path):
    model_dir, package = exported
    rng = np.random.default_rng(1)
    image = (rng.random((101, 93)) * 100).astype(np.float32)  # not on the size grid
    write_image(tmp_path / "in.tif", image, ImageMetadata("YX", (0.1, 0.1)))
    for src, name, extra in ((model_dir, "ref.tif", []), (package, "pkg.tif", []),
                             (package, "tiles.tif", ["--tile", "60,60"]),
                             (package, "budget.tif", ["--max-memory", "3MB"])):
        res = runner.invoke(app, ["predict", str(src), str(tmp_path / "in.tif"), "-o",
                                  str(tmp_path / name), *extra])
        assert res.exit_code == 0, res.output
    ref, _ = read_image(tmp_path / "ref.tif")
    pkg, meta = read_image(tmp_path / "pkg.tif")
    tiles, _ = read_image(tmp_path / "tiles.tif")
    np.testing.assert_array_equal(pkg, ref)  # the same network, weights and normalisation
    np.testing.assert_allclose(tiles, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # --max-memory reaches the package's model: tiles from the budget, the same result
    np.testing.assert_allclose(read_image(tmp_path / "budget.tif")[0], ref, rtol=1e-5,
                               atol=1e-5 * np.abs(ref).max())
    small = runner.invoke(app, ["predict", str(package), str(tmp_path / "in.tif"), "-o",
                                str(tmp_path / "small.tif"), "--max-memory", "10KB"])
    assert small.exit_code == 2 and "too small" in small.output  # the budget was applied
    assert meta.voxel_size == (0.1, 0.1)
    assert load_lucyd_package(package).card == load_model(model_dir).card
    unpacked = tmp_path / "unpacked"  # the package's folder, or its rdf.yaml, work the same
    with zipfile.ZipFile(package) as zf:
        zf.extractall(unpacked)
    assert is_bioimageio_package(unpacked) and is_bioimageio_package(unpacked / "rdf.yaml")
    written = predict_package_file(unpacked / "rdf.yaml", tmp_path / "in.tif",
                                   tmp_path / "folder.tif", progress=False)
    np.testing.assert_array_equal(read_image(written["restored"])[0], ref)


def _foreign_package(root: Path) -> Path:
    """Another tool's package, built with bioimageio.spec: TorchScript ``3·v + 1`` after a
    ``scale_linear`` ×2 preprocessing, i.e. ``6·x + 1``, axes (batch, channel, y, x), step 8."""
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    root.mkdir()
    net = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(3.0)
        net.bias.fill_(1.0)
    torch.jit.save(torch.jit.script(net), root / "weights.pt")
    x = np.random.default_rng(0).random((1, 1, 16, 24), dtype=np.float32)
    np.save(root / "in.npy", x)
    np.save(root / "out.npy", 6 * x + 1)

    def axes(kind, size):
        return [bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier("c")])] + [
            kind(id=bio.AxisId(a), size=size(a), scale=0.5, unit="micrometer") for a in "yx"
        ]

    descr = bio.ModelDescr(
        name="scale conv test", description="6 x + 1",
        authors=[bio.Author(name="lucyd tests")],
        cite=[bio.CiteEntry(text="CARE", doi=bio.Doi("10.1038/s41592-018-0216-7"))],
        license=bio.LicenseId("MIT"),
        inputs=[bio.InputTensorDescr(
            id=bio.TensorId("input"),
            axes=axes(bio.SpaceInputAxis, lambda a: bio.ParameterizedSize(min=8, step=8)),
            test_tensor=bio.FileDescr(source=root / "in.npy"),
            preprocessing=[bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=2.0))])],
        outputs=[bio.OutputTensorDescr(
            id=bio.TensorId("output"),
            axes=axes(bio.SpaceOutputAxis, lambda a: bio.SizeReference(
                tensor_id=bio.TensorId("input"), axis_id=bio.AxisId(a))),
            test_tensor=bio.FileDescr(source=root / "out.npy"))],
        weights=bio.WeightsDescr(torchscript=bio.TorchscriptWeightsDescr(
            source=root / "weights.pt", pytorch_version=bio.Version("2.0"))),
    )
    return save_bioimageio_package(descr, output_path=root / "foreign.zip")


def test_predict_with_another_tools_package(tmp_path):
    package = _foreign_package(tmp_path / "foreign")
    assert is_bioimageio_package(package)
    rng = np.random.default_rng(2)
    image = (rng.random((37, 45)) * 10).astype(np.float32)  # padded to 40 × 48 and cropped back
    write_image(tmp_path / "in.tif", image, ImageMetadata("YX", (0.2, 0.3)))
    res = runner.invoke(app, ["predict", str(package), str(tmp_path / "in.tif"), "-o",
                              str(tmp_path / "out.tif")])
    assert res.exit_code == 0, res.output
    out, meta = read_image(tmp_path / "out.tif")
    np.testing.assert_allclose(out, 6 * image + 1, rtol=1e-6)
    assert meta.voxel_size == (0.2, 0.3)
    # a 2D package on a 3D stack: each z plane through the batch axis
    stack = (rng.random((3, 20, 17)) * 10).astype(np.float32)
    write_image(tmp_path / "stack.tif", stack, ImageMetadata("ZYX", (1.0, 0.2, 0.3)))
    written = predict_package_file(package, tmp_path / "stack.tif", tmp_path / "stack_out.tif")
    out, meta = read_image(written["restored"])
    np.testing.assert_allclose(out, 6 * stack + 1, rtol=1e-6)
    assert meta.voxel_size == (1.0, 0.2, 0.3)
    with pytest.raises(InputError, match="whole image"):
        predict_package_file(package, tmp_path / "in.tif", tmp_path / "t.tif", tile_shape=(16, 16))
    # a cluster or a budget cannot reach bioimageio.core: refused in one line, nothing written
    res = runner.invoke(app, ["predict", str(package), str(tmp_path / "in.tif"), "-o",
                              str(tmp_path / "c.tif"), "--cluster", "local:2", "--max-memory", "1GB"])
    assert res.exit_code == 2 and "--cluster/--max-memory" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "c.tif").exists()


# ------------------------------------------------------------------ errors and small parts


def test_export_and_package_errors(exported, tmp_path):
    model_dir, package = exported
    with pytest.raises(InputError, match=".zip"):
        export_bioimageio(model_dir, tmp_path / "model.tif")
    with pytest.raises(InputError, match="SPDX"):
        export_bioimageio(model_dir, tmp_path / "m.zip", license="NOPE")
    with pytest.raises(InputError, match="2D images but the sample is 3D"):
        export_bioimageio(model_dir, tmp_path / "m.zip", sample=np.ones((4, 40, 40)))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for f in model_dir.iterdir():
        (unfinished / f.name).write_bytes(f.read_bytes())
    card = json.loads((unfinished / "model.json").read_text())
    card["training"]["status"] = "interrupted"
    (unfinished / "model.json").write_text(json.dumps(card))
    with pytest.warns(UserWarning), pytest.raises(InputError, match="before exporting"):
        export_bioimageio(unfinished, tmp_path / "u.zip")
    assert not is_bioimageio_package(model_dir)  # a model folder is not a package
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("notes.txt", "no rdf")
    assert not is_bioimageio_package(plain)
    with pytest.raises(FileFormatError, match="not a bioimage.io package"):
        load_lucyd_package(plain)
    res = runner.invoke(app, ["predict", str(package), str(tmp_path / "none.tif"), "-o",
                              str(tmp_path / "o.tif"), "--uncertainty"])
    assert res.exit_code == 2
    write_image(tmp_path / "x.tif", np.ones((40, 40), np.float32))
    res = runner.invoke(app, ["predict", str(package), str(tmp_path / "x.tif"), "-o",
                              str(tmp_path / "o.tif"), "--uncertainty"])
    assert res.exit_code == 2 and "--uncertainty" in res.output


def test_axis_scales_survive_bioimageio_size_arithmetic():
    """Whole nanometres where possible; otherwise micrometres only where size·s/s is exact."""
    assert axis_scales((0.3, 0.13, 0.13)) == ("nanometer", (300.0, 130.0, 130.0))
    assert axis_scales(None) == (None, ())
    unit, scales = axis_scales((0.12345678, 0.1))
    sizes = np.arange(1, 1 << 14, dtype=np.float64)
    assert unit in (None, "micrometer")
    assert unit is None or all(np.all(sizes * s / s == sizes) for s in scales)
    assert axis_scales((0.5, 0.25)) == ("nanometer", (500.0, 250.0))


def test_3d_package_axes_and_scales(tmp_path, one_thread):
    """A 3D RLN: z, y, x axes with the anisotropic voxel size in nm; the spec validates it.

    (bioimageio.core's full test of a 3D package: benchmarks/bench_bioimageio.py.)
    """
    from bioimageio.spec import load_model_description

    data = _dataset(tmp_path / "data", shape=(24, 32, 32), n=2, voxel=(0.3, 0.13, 0.13))
    cfg = TrainConfig.build(model="rln", patch=(8, 16, 16), batch=1, steps=1, val_interval=1,
                            val_patches=1, device="cpu", seed=0)
    model_dir = train(cfg, data, tmp_path / "model")
    package = export_bioimageio(model_dir, tmp_path / "rln3d.zip", authors=["Test Author"])
    rdf = yaml.safe_load(_read(package, "rdf.yaml"))
    space = [a for a in rdf["inputs"][0]["axes"] if a["type"] == "space"]
    assert [(a["id"], a["scale"], a["unit"]) for a in space] == [
        ("z", 300.0, "nanometer"), ("y", 130.0, "nanometer"), ("x", 130.0, "nanometer")]
    assert _npy(package, "test_input.npy").shape == (1, 1, 38, 38, 38)  # 24×32×32 mirror-padded
    descr = load_model_description(str(package))  # format, hashes, test tensors vs axes
    assert [str(a.id) for a in descr.outputs[0].axes] == ["batch", "channel", "z", "y", "x"]
    assert [a.halo for a in descr.outputs[0].axes[2:]] == [18, 18, 18]
