"""``lucyd demo``: a tiny end-to-end run (files, metrics, report in a headless browser, resume,
command line)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _browser import open_in_chromium
from lucyd.cli.main import app
from lucyd.errors import InputError
from lucyd.io import read_image
from lucyd.pipelines import DemoConfig, run_demo
from lucyd.pipelines.demo import METHOD_ORDER

#: a demo small enough for a test (well under a minute on 2 busy CPU cores)
TINY = dict(sample_shape=(16, 48, 48), train_n=2, train_shape=(16, 48, 48), patch=(16, 32, 32),
            batch=1, train_steps=2, val_interval=2, psf_shape=(17, 33, 33), rl_iterations=10,
            budget="custom")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    cfg = DemoConfig.preset(quick=True, **TINY)
    result = run_demo(cfg, out, progress=False)
    return cfg, out, result


# ------------------------------------------------------------------ outputs


def test_demo_writes_every_output(demo_run):
    cfg, out, result = demo_run
    for name in ("report.html", "figure.png", "figure_fitted.png", "metrics.json", "demo.json",
                 "psf.tif", "psf.png",
                 "sample_raw.tif", "sample_gt.tif", "restored_rl.tif", "restored_wb.tif",
                 "restored_rln.tif", "training_set/dataset.json", "model/model.json"):
        assert (out / name).exists(), name
    assert result["report"] == out / "report.html"
    # restorations carry the voxel size and the sample's shape
    for name in ("sample_raw.tif", "restored_rl.tif", "restored_wb.tif", "restored_rln.tif"):
        arr, meta = read_image(out / name)
        assert arr.shape == cfg.sample_shape
        assert meta.voxel_size == pytest.approx(cfg.voxel_size)
    # the saved configuration round-trips
    assert DemoConfig.load(out / "demo.json") == cfg
    # no partial files left behind by the atomic writers
    assert not [p for p in out.rglob(".*partial*")]


def test_demo_metrics_cover_every_method_and_deconvolution_helps(demo_run):
    _, out, result = demo_run
    payload = json.loads((out / "metrics.json").read_text())
    assert set(payload["metrics"]) == set(METHOD_ORDER)
    for method in METHOD_ORDER:
        m = payload["metrics"][method]
        for key in ("psnr", "ssim", "nrmse"):
            assert isinstance(m[key], float) and np.isfinite(m[key]), (method, key)
    raw = payload["metrics"]["raw"]
    # deconvolution with the true PSF must beat the blurred, noisy raw image
    assert payload["metrics"]["RL"]["psnr"] > raw["psnr"] + 0.1
    assert payload["metrics"]["WB"]["psnr"] > raw["psnr"] + 0.1
    assert payload["metrics"]["RL"]["nrmse"] < raw["nrmse"]
    assert result["metrics"]["RL"]["psnr"] == pytest.approx(payload["metrics"]["RL"]["psnr"])


def test_demo_ground_truth_matches_the_forward_model(demo_run):
    """The raw sample is the ground truth blurred by the PSF plus noise (independent check)."""
    from lucyd.forward import convolve

    cfg, out, _ = demo_run
    raw = read_image(out / "sample_raw.tif")[0]
    gt = read_image(out / "sample_gt.tif")[0]  # photons x phantom
    psf = read_image(out / "psf.tif")[0]
    expected = convolve(np.asarray(gt), np.asarray(psf), boundary="linear")
    resid = np.asarray(raw, np.float64) - expected
    # Poisson + read noise: mean ~0, variance ~ expected + read_noise^2
    assert abs(resid.mean()) < 0.05 * expected.mean()
    z = resid / np.sqrt(expected + cfg.read_noise**2)
    assert 0.8 < z.std() < 1.2


def _img_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)


def test_report_embeds_every_image(demo_run):
    _, out, _ = demo_run
    html = (out / "report.html").read_text(encoding="utf-8")
    sources = _img_sources(html)
    assert len(sources) >= 3  # figure, PSF, loss curve
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # the parameters and the metrics table are in the report
    assert "rl_iterations" in html and "PSNR" in html.upper()


def test_rerun_resumes_with_identical_results(demo_run):
    cfg, out, first = demo_run
    before = (out / "restored_rl.tif").stat().st_mtime_ns
    again = run_demo(cfg, out, progress=False)
    assert again["resumed"]
    assert (out / "restored_rl.tif").stat().st_mtime_ns == before  # reused, not recomputed
    for method in METHOD_ORDER:
        assert again["metrics"][method]["psnr"] == pytest.approx(first["metrics"][method]["psnr"])


def test_sample_is_deterministic_under_the_seed(tmp_path):
    """Stage 2 alone: the same seed gives the same sample (and another seed another one)."""
    from lucyd.pipelines.common import child_seeds

    a = child_seeds(0, ["sample", "noise", "training_set", "training"])
    b = child_seeds(0, ["sample", "noise", "training_set", "training"])
    c = child_seeds(1, ["sample", "noise", "training_set", "training"])
    assert a == b and a != c
    assert len(set(a.values())) == 4


def test_demo_config_rejects_bad_values():
    with pytest.raises(InputError, match="sample_kind"):
        DemoConfig.preset(sample_kind="mixed")  # the training kind is not a fair test sample
    with pytest.raises(InputError, match="patch"):
        DemoConfig.preset(patch=(64, 256, 256))
    with pytest.raises(InputError, match="psf_shape"):
        DemoConfig.preset(psf_shape=(32, 64, 64))
    with pytest.raises(InputError, match="unknown network"):
        DemoConfig.preset(network="unet9000")
    quick, full = DemoConfig.preset(quick=True), DemoConfig.preset()
    assert quick.budget == "quick" and full.budget == "default"
    assert np.prod(quick.patch) * quick.batch * quick.train_steps < (
        np.prod(full.patch) * full.batch * full.train_steps)


# ------------------------------------------------------------------ headless browser

def test_report_opens_in_headless_chromium(demo_run, tmp_path):
    _, out, _ = demo_run
    html = out / "report.html"
    n_images = len(_img_sources(html.read_text(encoding="utf-8")))
    shot = tmp_path / "report.png"
    loaded, failed = open_in_chromium(html, tmp_path / "profile", shot, window=(1280, 2400))
    assert loaded == f"{n_images}/{n_images}", failed
    # a real rendering: a PNG of the window size with many colours (figures, text)
    from matplotlib.image import imread

    rgb = np.round(imread(shot)[..., :3] * 255).astype(np.int64)
    assert rgb.shape[:2] == (2400, 1280)
    assert np.unique(rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]).size > 200


# ------------------------------------------------------------------ CLI


def _one_line_error(result) -> str:
    text = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--sample", "mixed"], "sample_kind"),
    (["--device", "quantum"], "device"),
])
def test_cli_bad_values_exit_2_with_one_line(tmp_path, args, needle):
    res = CliRunner().invoke(app, ["demo", "-o", str(tmp_path / "d"), *args])
    assert res.exit_code == 2
    line = _one_line_error(res)
    assert line.startswith("error:") and needle in line
    assert not (tmp_path / "d" / "report.html").exists()


def test_cli_unknown_option_exits_2(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--bogus"])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["demo", "--seed", "-3"])
    assert res.exit_code == 2


def test_cli_demo_runs_and_prints_table(tmp_path, monkeypatch):
    """The command line on a tiny configuration (the preset is patched to TINY sizes)."""
    import lucyd.pipelines.demo as demo_mod
    from lucyd.pipelines.presets import DEMO_PRESETS

    monkeypatch.setitem(DEMO_PRESETS, "quick", {**DEMO_PRESETS["quick"],
                                                     **{k: v for k, v in TINY.items()
                                                        if k != "budget"}})
    # the CLI must hand the options through to the configuration
    seen = {}

    def fake_run(cfg, out, **kw):
        seen["cfg"], seen["out"], seen["kw"] = cfg, out, kw
        row = {"method": "raw", "psnr": 20.0, "ssim": 0.5, "nrmse": 0.9, "time_s": 0.0,
               "parameters": "camera counts"}
        return {"rows": [row], "report": Path(out) / "report.html"}

    monkeypatch.setattr(demo_mod, "run_demo", fake_run)
    res = CliRunner().invoke(app, ["demo", "-o", str(tmp_path / "d"), "--quick", "--seed", "3",
                                   "--device", "cpu", "--sample", "granules", "--steps", "5"])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert (cfg.seed, cfg.device, cfg.sample_kind, cfg.train_steps) == (3, "cpu", "granules", 5)
    assert cfg.sample_shape == TINY["sample_shape"] and cfg.budget == "quick"
    assert "lucyd demo" in seen["kw"]["command"] and "--quick" in seen["kw"]["command"]
    assert "report:" in res.output and "psnr" in res.output.lower()
    # the training cap: default from the preset, 0 = none
    assert cfg.train_minutes == DEMO_PRESETS["quick"]["train_minutes"]
    res = CliRunner().invoke(app, ["demo", "-o", str(tmp_path / "d"), "--train-minutes", "0"])
    assert res.exit_code == 0, res.output
    assert seen["cfg"].train_minutes is None and seen["cfg"].budget == "default"


def test_stage_runner_reuses_finished_stages_and_redoes_missing_ones(tmp_path):
    from lucyd.pipelines.common import StageRunner, Stages, StageState

    target = tmp_path / "a.txt"
    calls = []

    def compute():
        calls.append(1)
        target.write_text("x")
        return 7

    def run(digest="d1"):
        runner = StageRunner(Stages(1, verbose=False), StageState(tmp_path, digest))
        return runner.run("a", "stage a", compute=compute, load=lambda rec: rec["value"],
                          files=(target,), record=lambda v: {"value": v})

    assert run() == 7 and run() == 7 and len(calls) == 1  # second run: loaded
    target.unlink()
    assert run() == 7 and len(calls) == 2  # its file is gone: computed again
    assert run("d2") == 7 and len(calls) == 3  # another configuration: computed again
