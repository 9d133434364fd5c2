"""The restorer registry (lucyd.methods), progress reporting and cancellation (lucyd.progress)
and the boundary vocabularies."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import ndimage

from lucyd.config import JobConfig
from lucyd.deconv import deconvolve
from lucyd.errors import InputError
from lucyd.io import write_image
from lucyd.methods import (
    available_methods,
    build_method,
    deconv_boundary,
    forward_boundary,
    get_method,
    register_method,
)
from lucyd.progress import Cancelled, progress, reporting
from lucyd.train import TrainConfig, train

SHAPE = (8, 32, 32)
VOXEL = (0.2, 0.1, 0.1)


def _psf() -> np.ndarray:
    z, y, x = np.mgrid[-3:4, -4:5, -4:5].astype(np.float32)
    psf = np.exp(-(z**2) / (2 * 1.5**2) - (y**2 + x**2) / (2 * 1.2**2)).astype(np.float32)
    return psf / psf.sum()


@pytest.fixture(scope="module")
def blurred():
    """(ground truth, blurred noisy image, PSF): sparse beads on a background."""
    rng = np.random.default_rng(0)
    gt = np.full(SHAPE, 5.0, np.float32)
    idx = tuple(rng.integers(0, s, 20) for s in SHAPE)
    gt[idx] += 4000.0
    psf = _psf()
    blurred = ndimage.convolve(gt, psf, mode="constant", cval=5.0)
    raw = rng.poisson(blurred).astype(np.float32)
    return gt, raw, psf


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, blurred):
    """A tiny 3D CARE trained for two steps (the registry only needs a model folder)."""
    gt, raw, _ = blurred
    root = tmp_path_factory.mktemp("methods")
    for i in range(2):
        write_image(root / "data" / "raw" / f"{i}.npy", raw)
        write_image(root / "data" / "gt" / f"{i}.npy", gt)
    cfg = TrainConfig(model="care", ndim=3, net_kwargs={"first_filters": 4}, patch=(8, 16, 16),
                      batch=2, steps=2, val_interval=2, val_patches=2, device="cpu", seed=0)
    return train(cfg, root / "data", root / "model")


#: test parameters per registered method (tiny budgets); a new method gets {} by default
def _params(name: str, model_dir) -> dict:
    return {
        "network": {"model": str(model_dir), "device": "cpu"},
        "isotropic": {"steps": 2, "net_kwargs": {"first_filters": 4}, "batch": 2, "patch": 16,
                      "device": "cpu"},
        "rl": {"device": "cpu"},
        "rl-biggs": {"device": "cpu"},
        "wb-rl": {"device": "cpu"},
    }.get(name, {})


def test_registry_lists_the_builtin_methods():
    names = available_methods()
    assert {"raw", "rl", "rl-biggs", "wb-rl", "gaussian", "network", "isotropic"} <= set(names)
    assert names == sorted(names)
    assert set(available_methods("deconvolution")) == {"rl", "rl-biggs", "wb-rl"}
    for name in names:
        method = get_method(name)
        assert issubclass(method.config, JobConfig) and method.summary  # documented


@pytest.mark.parametrize("name", available_methods())
def test_every_method_restores_a_blurred_image(name, blurred, model_dir, one_thread):
    gt, raw, psf = blurred
    restorer = build_method(name, **_params(name, model_dir))
    out = restorer.restore(raw, psf=psf, voxel_size=VOXEL, progress=False)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    if restorer.method.changes_shape:  # isotropic: z resampled by dz / dx = 2
        assert out.shape == (2 * SHAPE[0],) + SHAPE[1:]
    else:
        assert out.shape == SHAPE
    assert isinstance(restorer.describe(), str)
    if restorer.method.task == "deconvolution":
        # the matched PSF: closer to the ground truth than the raw image (least-squares gain)
        def err(img):
            a = np.vdot(img, gt) / np.vdot(img, img)
            return float(np.linalg.norm(a * img - gt))
        assert err(out) < err(raw)


def test_rl_via_the_registry_equals_deconvolve(blurred):
    _, raw, psf = blurred
    for name, kwargs in (("rl", {}), ("wb-rl", {"back_projector": "wiener-butterworth",
                                                "iterations": 2}),
                         ("rl-biggs", {"acceleration": "biggs-andrews"})):
        via = build_method(name, device="cpu").restore(raw, psf=psf)
        direct = deconvolve(raw, psf, device="cpu", progress=False, **kwargs)
        assert np.array_equal(via, direct), name


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(InputError) as info:
        build_method("magic")
    msg = str(info.value)
    assert "magic" in msg and "\n" not in msg
    assert all(n in msg for n in available_methods())


@pytest.mark.parametrize("name, params, needle", [
    ("rl", {"iterations": 0}, "iterations"),
    ("rl", {"iteration": 5}, "iteration"),
    ("rl", {"boundary": "reflect"}, "boundary"),
    ("wb-rl", {"wb_alpha": -1}, "wb_alpha"),
    ("gaussian", {"sigma": float("nan")}, "sigma"),
    ("network", {"model": "/no/such/folder"}, "model"),
    ("isotropic", {"z_factor": 0.5}, "z_factor"),
])
def test_config_errors_are_one_line_input_errors(name, params, needle):
    with pytest.raises(InputError) as info:
        build_method(name, **params)
    msg = str(info.value)
    assert msg.startswith(f"method {name}: {needle}") and "\n" not in msg


def test_restore_checks_its_inputs(blurred):
    _, raw, psf = blurred
    rl = build_method("rl")
    with pytest.raises(InputError, match="psf"):
        rl.restore(raw)
    with pytest.raises(InputError, match="psf"):
        rl.restore(raw, psf=psf[0])
    bad = raw.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="image"):
        rl.restore(bad, psf=psf)
    with pytest.raises(InputError, match="voxel_size"):
        build_method("isotropic", steps=1).restore(raw)


def test_register_rejects_duplicates_and_bad_configs():
    with pytest.raises(ValueError, match="already registered"):
        register_method("rl", config=JobConfig, task="deconvolution")(lambda *a, **k: None)
    with pytest.raises(ValueError, match="task"):
        register_method("x-test", config=JobConfig, task="painting")
    with pytest.raises(ValueError, match="JobConfig"):
        register_method("x-test", config=dict, task="identity")


# ------------------------------------------------------------------ progress and cancel


def test_progress_callback_sees_every_iteration(blurred):
    _, raw, psf = blurred
    seen = []
    build_method("rl", iterations=4, device="cpu").restore(
        raw, psf=psf, progress=lambda done, total, desc: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_progress_reaches_blocks_of_blocked_deconvolution(blurred):
    _, raw, psf = blurred
    seen = []
    out = build_method("rl", iterations=2, device="cpu", max_memory=1_500_000).restore(
        raw, psf=psf, progress=lambda done, total, desc: seen.append((done, total, desc)))
    assert out.shape == SHAPE
    totals = {t for _, t, _ in seen}
    assert len(totals) == 1 and totals.pop() > 1  # one report per block, not per iteration
    assert [d for d, _, _ in seen] == list(range(1, len(seen) + 1))


def test_cancel_stops_at_the_next_step(blurred):
    _, raw, psf = blurred
    event = threading.Event()
    seen = []

    def callback(done, total, desc):
        seen.append(done)
        if done == 2:
            event.set()

    with pytest.raises(Cancelled):
        build_method("rl", iterations=50, device="cpu").restore(raw, psf=psf, progress=callback,
                                                                 cancel=event)
    assert seen == [1, 2]
    with pytest.raises(Cancelled):  # already set: nothing runs
        build_method("rl").restore(raw, psf=psf, cancel=lambda: True)


def test_progress_without_reporter_is_a_plain_bar_and_inner_loops_stay_silent():
    from lucyd.progress import Reporter

    assert list(progress(range(3), disable=True)) == [0, 1, 2]
    seen = []
    with reporting(Reporter(lambda d, t, s: seen.append(s))):
        assert list(progress(range(2), desc="outer")) == [0, 1]
        assert list(progress(range(2), desc="inner", disable=True)) == [0, 1]
        bar = progress(total=3, desc="manual", initial=1)
        bar.update(2)
        bar.set_postfix(loss=1.0)
        bar.close()
    assert seen == ["outer", "outer", "manual"] and bar.n == 3


# ------------------------------------------------------------------ boundary vocabularies


def test_boundary_names_map_both_ways():
    from lucyd.deconv import BOUNDARIES as DECONV
    from lucyd.forward.convolution import BOUNDARIES as FORWARD

    assert {deconv_boundary(b) for b in DECONV} == set(DECONV)
    assert {forward_boundary(b) for b in FORWARD} == set(FORWARD)
    assert deconv_boundary("linear") == "zero" and forward_boundary("zero") == "linear"
    assert deconv_boundary("CIRCULANT") == "circulant" == forward_boundary("circulant")
    with pytest.raises(InputError, match="reflect"):
        deconv_boundary("reflect")
    with pytest.raises(InputError, match="non-circulant"):
        forward_boundary("non-circulant")
    assert build_method("rl", boundary="linear").config.boundary == "zero"



def test_deconvolve_and_convolve_accept_both_spellings(blurred):
    from lucyd.forward import convolve

    _, raw, psf = blurred
    zero = deconvolve(raw, psf, iterations=2, boundary="zero", device="cpu", progress=False)
    assert np.array_equal(deconvolve(raw, psf, iterations=2, boundary="linear", device="cpu",
                                     progress=False), zero)
    obj = raw[:, :16, :16]
    assert np.array_equal(convolve(obj, psf, boundary="zero", device="cpu"),
                          convolve(obj, psf, boundary="linear", device="cpu"))
    with pytest.raises(InputError, match="boundary"):
        deconvolve(raw, psf, boundary="reflect", progress=False)
    with pytest.raises(InputError, match="boundary.*unknown"):
        convolve(obj, psf, boundary="bogus")


def test_progress_reaches_the_tiles_of_tiled_prediction(blurred, model_dir, one_thread):
    raw = np.tile(blurred[1], (1, 4, 2))  # (8, 128, 64): room for tiles beside CARE's halo
    whole = build_method("network", model=str(model_dir), device="cpu").restore(raw)
    seen = []
    tiled = build_method("network", model=str(model_dir), device="cpu",
                         tile_shape=(8, 64, 64)).restore(
        raw, progress=lambda done, total, desc: seen.append((done, total)))
    assert len(seen) > 1 and seen[-1] == (len(seen), len(seen))  # one report per tile
    assert np.allclose(tiled, whole, rtol=1e-4, atol=1e-3 * float(np.abs(whole).max()))
