"""``lucyd bench``: a tiny synthetic run (table, breaking-point curves), the real suite on a small
stand-in folder (and skipped cleanly without data), and the command line."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from lucyd.cli.main import app
from lucyd.errors import InputError
from lucyd.io import ImageMetadata, write_image
from lucyd.pipelines import BenchConfig, run_bench
from lucyd.pipelines.bench import CSV_COLUMNS

#: tiny synthetic benchmark: 2 kinds, a 4-point photon series spanning 3 decades, 2 NAs
TINY = dict(shape=(16, 48, 48), breaks_shape=(16, 48, 48), psf_shape=(17, 33, 33),
            kinds=("tubules", "granules"), photon_series=(0.01, 0.1, 1.0, 10.0),
            na_series=(0.8, 1.4), networks=("rln",), train_n=2, train_shape=(16, 48, 48),
            patch=(16, 32, 32), batch=1, train_steps=2, val_interval=2, rl_iterations=10,
            methods=("raw", "rl", "wb-rl", "rl-biggs"), budget="custom")


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    cfg = BenchConfig.preset("synthetic", quick=True, **TINY)
    return cfg, out, run_bench(config=cfg, out_dir=out, progress=False)


def test_table_has_every_method_for_every_dataset(synthetic_run):
    cfg, out, result = synthetic_run
    # the configured registry methods in order, then the trained network
    methods = ["raw", "RL", "WB RL", "RL (Biggs-Andrews)", "RLN"]
    datasets = sorted({r["dataset"] for r in result["rows"]})
    assert len(datasets) == len(cfg.kinds)
    for ds in datasets:
        got = [r["method"] for r in result["rows"] if r["dataset"] == ds]
        assert got == methods, (ds, got)
    for r in result["rows"]:
        assert np.isfinite(r["psnr"]) and 0 <= r["ssim"] <= 1 and r["nrmse"] > 0
        assert r["time_s"] >= 0 and r["parameters"]
    # the network row names its parameter count
    assert any("15,968 weights" in r["parameters"] for r in result["rows"])
    # RL with the true PSF helps on both held-out kinds
    for ds in datasets:
        by = {r["method"]: r for r in result["rows"] if r["dataset"] == ds}
        assert by["RL"]["psnr"] > by["raw"]["psnr"]


def test_files_json_csv_report(synthetic_run):
    cfg, out, result = synthetic_run
    for name in ("bench.json", "bench.csv", "report.html", "breaks_photons_psnr.png",
                 "breaks_photons_gain.png", "breaks_blur_psnr.png", "breaks_blur_gain.png",
                 "breaks_photons_ssim.png", "synthetic_tubules.png"):
        assert (out / name).exists(), name
    payload = json.loads((out / "bench.json").read_text())
    assert payload["config"] == cfg.model_dump(mode="json")
    assert len(payload["rows"]) == len(result["rows"])
    with open(out / "bench.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(result["rows"])
    assert float(rows[0]["psnr"]) == pytest.approx(result["rows"][0]["psnr"], rel=1e-5)
    html = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert len(sources) == 2 + 6  # one panel figure per kind + 3 plots per series
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "until it breaks" in html


def test_breaking_point_curves_have_the_expected_trends(synthetic_run):
    cfg, _, result = synthetic_run
    photons = result["breaks"]["photons"]
    assert photons["x"] == list(cfg.photon_series)
    raw = np.array(photons["psnr"]["raw"])
    # more photons, less noise: the raw image's PSNR rises along the whole series
    assert np.all(np.diff(raw) > 0), raw
    assert raw[-1] - raw[0] > 1.5
    # deconvolution helps at the high-photon end ...
    rl = np.array(photons["psnr"]["RL"])
    assert rl[-1] > raw[-1]
    # ... and its gain over raw grows with the photon count
    assert (rl - raw)[-1] > (rl - raw)[0]
    blur = result["breaks"]["blur"]
    # a lower NA gives a wider PSF: x is the lateral FWHM, in µm, decreasing with NA
    assert blur["na"] == list(cfg.na_series)
    assert blur["x"][0] > blur["x"][1] > 0.1
    # the raw image is closer to the truth with the sharper PSF
    assert blur["psnr"]["raw"][1] > blur["psnr"]["raw"][0]
    assert set(photons["stops_helping"]) == {"RL", "WB RL", "RL (Biggs-Andrews)", "RLN"}


# ------------------------------------------------------------------ real suite


def _stand_in_real_data(root):
    """A small folder with the real data's layout (synthetic content, no references)."""
    rng = np.random.default_rng(0)
    from scipy import ndimage

    obj = np.zeros((12, 48, 48), np.float32)
    obj[tuple(rng.integers(0, [12, 48, 48], size=(40, 3)).T)] = 2000
    img = ndimage.gaussian_filter(obj, (1.5, 1.2, 1.2)) + 100
    img = rng.poisson(img).astype(np.float32)
    g = np.zeros((9, 17, 17), np.float32)
    g[4, 8, 8] = 1
    psf = ndimage.gaussian_filter(g, (1.5, 1.2, 1.2))
    write_image(root / "widefield_dapi" / "dapi_001.tif", img,
                ImageMetadata("ZYX", (0.3, 0.13, 0.13)))
    write_image(root / "widefield_dapi" / "PSF_dapi.tif", psf / psf.sum())
    for name in ("020_1", "035_1"):
        clean = ndimage.gaussian_filter(rng.uniform(0, 255, (64, 64)), 3).astype(np.float32)
        write_image(root / "w2s_denoise" / f"target_avg400_{name}.tif", clean)
        write_image(root / "w2s_denoise" / f"input_avg1_{name}.tif",
                    (clean + rng.normal(0, 20, clean.shape)).astype(np.float32))


def test_real_suite_on_a_stand_in_folder(tmp_path, monkeypatch):
    root = tmp_path / "real"
    _stand_in_real_data(root)
    monkeypatch.setenv("LUCYD_REAL_DATA", str(root))
    cfg = BenchConfig.preset("real", quick=True)
    result = run_bench(config=cfg, out_dir=tmp_path / "out", progress=False)
    real = result["real"]
    # the deconwolf references are absent here: skipped with a message naming the file
    assert any("reference_rl20_bertero" in s for s in real["skipped"])
    res = {r["image"]: r for r in real["resolution"]}
    assert set(res) == {"raw", "RL", "WB RL"}
    w2s = [r for r in result["rows"] if r["dataset"].startswith("W2S")]
    assert {r["method"] for r in w2s} == {"raw frame", "Gaussian sigma 1.5"}
    # the Gaussian filter removes the white noise of these smooth images
    for name in ("020_1", "035_1"):
        by = {r["method"]: r for r in w2s if name in r["dataset"]}
        assert by["Gaussian sigma 1.5"]["psnr"] > by["raw frame"]["psnr"] + 3
    assert (tmp_path / "out" / "real_dapi.png").exists()
    assert (tmp_path / "out" / "report.html").exists()
    # no real-data-derived image files in the output (figures only)
    assert not list((tmp_path / "out").rglob("*.tif"))


def test_real_suite_skips_cleanly_without_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCYD_REAL_DATA", str(tmp_path / "nowhere"))
    result = run_bench(config=BenchConfig.preset("real", quick=True), out_dir=tmp_path / "o",
                       progress=False)
    assert result["rows"] == []
    assert "real data not found" in result["real"]["skipped"][0]
    assert (tmp_path / "o" / "report.html").exists()


def test_real_data_location_needs_no_source_checkout(tmp_path, monkeypatch):
    """Explicit folder, else $LUCYD_REAL_DATA, else ../shared/data/real from the working
    directory: never a path derived from where lucyd is installed."""
    from lucyd.pipelines import real_data_dir

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("LUCYD_REAL_DATA", raising=False)
    assert real_data_dir() == tmp_path / "shared" / "data" / "real"
    monkeypatch.setenv("LUCYD_REAL_DATA", str(tmp_path / "env"))
    assert real_data_dir() == tmp_path / "env"
    assert real_data_dir(tmp_path / "given") == tmp_path / "given"


def test_real_suite_reads_the_configured_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCYD_REAL_DATA", str(tmp_path / "elsewhere"))
    cfg = BenchConfig.preset("real", quick=True, real_data=str(tmp_path / "configured"))
    result = run_bench(config=cfg, out_dir=tmp_path / "o", progress=False)
    assert str(tmp_path / "configured") in result["real"]["skipped"][0]


# ------------------------------------------------------------------ configuration and CLI


def test_bench_config_validation():
    with pytest.raises(InputError, match="suite"):
        BenchConfig.preset("everything")
    with pytest.raises(InputError, match="na_series"):
        BenchConfig.preset(na_series=(0.8, 1.6))
    with pytest.raises(InputError, match="photon_series"):
        BenchConfig.preset(photon_series=(5.0,))
    q = BenchConfig.preset("all", quick=True)
    assert q.suite == "all" and q.budget == "quick" and q.networks == ("rln",)
    # methods come from the restorer registry; raw is required (every gain is over it)
    with pytest.raises(InputError, match="methods.*raw"):
        BenchConfig.preset(methods=("rl",))
    with pytest.raises(InputError, match="magic.*rl-biggs"):
        BenchConfig.preset(methods=("raw", "magic"))
    assert BenchConfig.preset(methods=("raw", "gaussian")).method_params("gaussian") == {}
    assert q.method_params("wb-rl") == {"iterations": q.wb_iterations, "device": "auto"}


def _one_line(res) -> str:
    text = (getattr(res, "stderr", None) or res.output).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--suite", "bogus"], "--suite"),
    (["--networks", "rln,nonet"], "nonet"),
    (["--model", "RLN"], "LABEL=FOLDER"),
    (["--model", "RLN=/no/such/model"], "no such model folder"),
    (["--methods", "raw,magic"], "magic"),
])
def test_cli_bad_values_exit_2_with_one_line(tmp_path, args, needle):
    res = CliRunner().invoke(app, ["bench", "-o", str(tmp_path / "b"), "--quick", *args])
    assert res.exit_code == 2
    line = _one_line(res)
    assert line.startswith("error:") and needle in line


def test_cli_real_quick_on_stand_in_data(tmp_path, monkeypatch):
    root = tmp_path / "real"
    _stand_in_real_data(root)
    monkeypatch.setenv("LUCYD_REAL_DATA", str(root))
    res = CliRunner().invoke(app, ["bench", "--suite", "real", "--quick", "-o",
                                   str(tmp_path / "b"), "--device", "cpu",
                                   "--methods", "raw,rl,rl-biggs"])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and "W2S" in res.output
    payload = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert payload["config"]["device"] == "cpu" and payload["suite"] == "real"
    assert payload["config"]["methods"] == ["raw", "rl", "rl-biggs"]


# ------------------------------------------------------------------ shared machinery


def test_timing_helpers_run_what_they_say():
    from lucyd.pipelines.common import repeat_time, timed

    calls = []
    assert repeat_time(lambda: calls.append(1), 3, reduce="min") >= 0
    assert len(calls) == 4  # one warm-up, then the repeats
    synced = []
    repeat_time(lambda: None, 2, sync=lambda: synced.append(1))
    assert len(synced) == 3
    with pytest.raises(InputError, match="reduce"):
        repeat_time(lambda: None, 1, reduce="mean")
    out, seconds = timed(lambda a, b=0: np.arange(3) + a + b, 1, b=2)
    assert out.dtype == np.float32 and out.tolist() == [3, 4, 5] and seconds >= 0


def test_benchmark_pieces_are_the_pipeline_pieces():
    """The scripts' PSF, sample and acquisition are the bench pipeline's: a normalised PSF and
    the RLN recipe's forward model (mean of raw = photons x blurred ground truth)."""
    from lucyd.pipelines.bench import acquire, held_out_sample, widefield_psf

    psf = widefield_psf("gaussian", (9, 17, 17), (0.2, 0.1, 0.1), na=1.4, wavelength=0.52,
                        ni=1.518)
    assert psf.dtype == np.float32 and psf.sum() == pytest.approx(1.0, rel=1e-5)
    gt = held_out_sample("granules", (8, 32, 32), seed=3, background=30.0)
    assert np.array_equal(gt, held_out_sample("granules", (8, 32, 32), seed=3, background=30.0))
    raw, truth = acquire(gt, psf, photons=5.0, read_noise=0.0, seed=0, device="cpu")
    assert np.allclose(truth, 5.0 * gt)
    from lucyd.forward import convolve

    expected = 5.0 * convolve(gt, psf, boundary="linear", device="cpu")
    assert raw.mean() == pytest.approx(expected.mean(), rel=0.01)
    assert not np.array_equal(raw, np.round(expected))  # Poisson noise was drawn
