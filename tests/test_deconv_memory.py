"""The in-place RL engine (issue 16): same results as independent NumPy code, its memory model,
the FFT workspace, compact Bertero weights and PSF trimming."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from lucyd.deconv import deconvolve, estimate_memory
from lucyd.deconv.engine import BerteroWeights, _tv_denominator, job_plan
from lucyd.deconv.psfprep import trim_psf
from lucyd.errors import InputError
from lucyd.forward.fft import FFTWorkspace, is_point_symmetric, kernel_spectrum, multiply_spectrum
from test_deconv import numpy_rl_bertero, rel


@pytest.mark.parametrize("shape", [(12, 18, 21), (12, 18, 20), (30, 25)])
def test_workspace_transforms_match_numpy(rng, shape):
    """In-place r2c / c2r (shared buffer, odd and even last axis) equal numpy's rfftn / irfftn."""
    x = rng.random(shape).astype(np.float32)
    ws = FFTWorkspace(shape)
    ws.real.copy_(torch.from_numpy(x))
    spec = ws.forward().numpy().copy()
    ref = np.fft.rfftn(x.astype(np.float64))
    assert np.abs(spec - ref).max() < 1e-5 * np.abs(ref).max()
    ws.spec.copy_(torch.from_numpy((ref * 0.5).astype(np.complex64)))
    back = ws.inverse().numpy()
    np.testing.assert_allclose(back, 0.5 * x, atol=1e-6)
    # from a separate array, the workspace's real part untouched as input
    other = rng.random(shape).astype(np.float32)
    ws.forward(torch.from_numpy(other))
    assert np.abs(ws.spec.numpy() - np.fft.rfftn(other)).max() < 1e-5 * np.abs(np.fft.rfftn(other)).max()


def test_kernel_spectrum_real_for_symmetric_and_conjugate_product(rng):
    shape = (10, 16, 14)
    sym = ndimage.gaussian_filter(np.pad(np.ones((1, 1, 1)), ((2, 2), (3, 3), (3, 3))), 1.0)
    asym = rng.random((5, 7, 7))
    ws = FFTWorkspace(shape)
    assert is_point_symmetric(sym) and not is_point_symmetric(asym)
    otf_sym = kernel_spectrum(sym, ws)
    otf_asym = kernel_spectrum(asym, ws)
    assert otf_sym.dtype == torch.float32 and otf_asym.dtype == torch.complex64

    def origin(k):
        z = np.zeros(shape)
        z[tuple(slice(0, n) for n in k.shape)] = k
        return np.roll(z, [-(n // 2) for n in k.shape], axis=(0, 1, 2))

    ref_asym = np.fft.rfftn(origin(asym))
    np.testing.assert_allclose(otf_asym.numpy(), ref_asym, atol=1e-5)
    np.testing.assert_allclose(otf_sym.numpy(), np.fft.rfftn(origin(sym)).real, atol=1e-6)
    x = (rng.random(ref_asym.shape) + 1j * rng.random(ref_asym.shape)).astype(np.complex64)
    for otf, ref in ((otf_asym, ref_asym), (otf_sym, np.fft.rfftn(origin(sym)).real)):
        for conj in (False, True):
            got = multiply_spectrum(torch.from_numpy(x.copy()), otf, conjugate=conj).numpy()
            np.testing.assert_allclose(got, x * (np.conj(ref) if conj else ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shift", [0, 1])
def test_in_place_rl_matches_independent_numpy(rng, shift):
    """Symmetric PSF (real OTF) and an off-centre one (complex OTF, adjoint by conjugation)."""
    x = ndimage.gaussian_filter(rng.uniform(0, 500, (14, 44, 40)), 1.5) + 20
    g = np.zeros((9, 13, 13))
    g[4, 6, 6] = 1
    psf = ndimage.gaussian_filter(g, (1.3, 1.6, 1.6))
    psf = np.roll(psf, shift, axis=2)
    psf /= psf.sum()
    y = rng.poisson(ndimage.convolve(x, psf, mode="nearest")).astype(np.float32)
    ours = deconvolve(y, psf, iterations=6, progress=False, device="cpu", centre_psf=False)
    floor = max(float(y.min()), 1e-6 * float(y.mean()))
    ref = numpy_rl_bertero(y, psf, 6, floor)
    assert rel(ours, ref) < 1e-5


def test_compact_bertero_weights_equal_the_full_array(rng):
    """W stored with the image's interior collapsed gives the same product as the full W."""
    image_shape, psf_shape = (20, 40, 9), (5, 7, 7)
    plan = job_plan(image_shape, psf_shape, "non-circulant")
    full = torch.from_numpy(rng.uniform(0.3, 1.0, plan.job_shape).astype(np.float32))
    # make it constant along each axis's interior, as BP(1_obs) is
    for axis, (n, k) in enumerate(zip(image_shape, psf_shape, strict=True)):
        c = (k - 1) // 2
        if n - c > c + 1:
            sl = [slice(None)] * 3
            sl[axis] = slice(c, n - c)
            rep = [slice(None)] * 3
            rep[axis] = slice(c, c + 1)
            full[tuple(sl)] = full[tuple(rep)]
    weights = BerteroWeights(full, plan, psf_shape)
    assert weights.compact.numel() < full.numel() / 3  # z and y collapsed, x (9 < 2·3 + 2) not
    assert 4 * weights.compact.numel() == BerteroWeights.nbytes(image_shape, plan.job_shape, psf_shape)
    x = torch.from_numpy(rng.random(plan.job_shape).astype(np.float32))
    expected = x * torch.where(full > 0.01, 1 / full, torch.zeros(()))
    np.testing.assert_allclose(weights.apply(x.clone()).numpy(), expected.numpy(), rtol=1e-6)


def test_tv_denominator_matches_rolled_differences(rng):
    est = torch.from_numpy(rng.random((6, 9, 8)).astype(np.float32))
    bufs = [torch.empty_like(est) for _ in range(3)]
    got = _tv_denominator(est, 0.01, 1e-3, *bufs).clone()
    e = est.double().numpy()
    grads = [np.roll(e, -1, d) - e for d in range(3)]
    norm = np.sqrt(1e-6 + sum(g * g for g in grads))
    div = sum(g / norm - np.roll(g / norm, 1, d) for d, g in enumerate(grads))
    np.testing.assert_allclose(got.numpy(), np.maximum(1 - 0.01 * div, 0.05), rtol=1e-5)


def test_trim_psf_keeps_the_stated_energy():
    g = np.zeros((31, 61, 61))
    g[15, 30, 30] = 1
    psf = ndimage.gaussian_filter(g, (3.0, 4.0, 4.0))
    psf /= psf.sum()
    trimmed, kept = trim_psf(psf, 0.99)
    assert kept >= 0.99 and trimmed.sum() == pytest.approx(1, abs=1e-6)
    assert all(k % 2 for k in trimmed.shape) and trimmed.shape[1] < 61 and trimmed.shape[0] < 31
    # centred: the peak stays in the middle, and the crop is the one the energy says
    assert np.unravel_index(np.argmax(trimmed), trimmed.shape) == tuple(k // 2 for k in trimmed.shape)
    lo = [(n - k) // 2 for n, k in zip(psf.shape, trimmed.shape, strict=True)]
    box = psf[tuple(slice(a, a + k) for a, k in zip(lo, trimmed.shape, strict=True))]
    assert box.sum() == pytest.approx(kept, rel=1e-9)
    # minimal: peeling one more voxel off both ends of any axis loses too much
    for d in range(3):
        sl = [slice(a, a + k) for a, k in zip(lo, trimmed.shape, strict=True)]
        sl[d] = slice(lo[d] + 1, lo[d] + trimmed.shape[d] - 1)
        assert psf[tuple(sl)].sum() < 0.99
    assert trim_psf(psf, 1.0)[1] >= 1 - 1e-12
    with pytest.raises(InputError, match="psf_energy"):
        trim_psf(psf, 1.5)


_MEASURE = """
import json, sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from scipy import ndimage
from lucyd.deconv import deconvolve
image = np.random.default_rng(0).uniform(100, 200, (48, 192, 192)).astype(np.float32)
psf = np.zeros((31, 31, 31), np.float32); psf[15, 15, 15] = 1
psf = ndimage.gaussian_filter(psf, 3.0)
deconvolve(image[:8, :32, :32], psf[:5, :5, :5], iterations=1, progress=False)  # imports, plans
def status(key):
    return next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith(key + ":"))
Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
base = status("VmRSS")
deconvolve(image, psf, iterations=2, progress=False, device="cpu")
print(json.dumps({"extra": status("VmHWM") - base + image.nbytes}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_memory_model_within_20_percent_of_the_measured_peak():
    """Peak resident memory of one deconvolution (fresh process) against estimate_memory."""
    out = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True,
                         env={"LUCYD_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1",
                              "PATH": "/usr/bin:/bin", **{k: v for k, v in __import__("os").environ.items()
                                                          if k.startswith(("PYTHON", "HOME"))}},
                         check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])["extra"]
    model = estimate_memory((48, 192, 192), (31, 31, 31), symmetric_psf=True)
    assert 0.8 * model <= measured <= 1.2 * model, (measured, model)


def test_torch_fft_workspace_path_matches_the_pocketfft_path(rng, monkeypatch):
    """The path CUDA takes (separate torch tensors, torch.fft) gives the CPU path's result."""
    import lucyd.forward.fft as fft

    x = ndimage.gaussian_filter(rng.uniform(0, 500, (12, 30, 34)), 1.5) + 20
    psf = np.roll(ndimage.gaussian_filter(np.pad(np.ones((1, 1, 1)), ((3, 3), (4, 4), (4, 4))), 1.2), 1, 2)
    y = rng.poisson(ndimage.convolve(x, psf / psf.sum(), mode="nearest")).astype(np.float32)
    kw = dict(iterations=4, progress=False, device="cpu", centre_psf=False)
    shared = deconvolve(y, psf, **kw)
    wb_shared = deconvolve(y, psf, back_projector="wiener-butterworth", **kw)
    monkeypatch.setattr(fft, "_pocketfft", lambda: None)
    assert FFTWorkspace((4, 6, 8)).nbytes((4, 6, 8)) == 8 * 4 * 6 * 5 + 4 * 4 * 6 * 8
    assert rel(deconvolve(y, psf, **kw), shared) < 1e-5
    assert rel(deconvolve(y, psf, back_projector="wiener-butterworth", **kw), wb_shared) < 1e-5


def test_flat_psf_wiener_butterworth_is_a_clear_error():
    """A flat PSF has no gain at the cutoff: one-line InputError, not a ZeroDivisionError."""
    with pytest.raises(InputError, match="cutoff"):
        deconvolve(np.ones((8, 32, 32), np.float32), np.ones((5, 5, 5)), iterations=1,
                   back_projector="wiener-butterworth", progress=False)


class _CountingChunks:
    """A lazy chunked array (like zarr) that counts how often each chunk is decoded."""

    def __init__(self, data, chunks):
        self.data, self.chunks, self.shape, self.dtype = data, chunks, data.shape, data.dtype
        self.decoded: dict[tuple, int] = {}

    def __getitem__(self, region):
        ranges = [range(s.start // c, -(-s.stop // c)) for s, c in zip(region, self.chunks, strict=True)]
        for index in np.ndindex(*[len(r) for r in ranges]):
            key = tuple(r[i] for r, i in zip(ranges, index, strict=True))
            self.decoded[key] = self.decoded.get(key, 0) + 1
        return self.data[region]


def test_image_stats_stream_whole_chunks_once(rng):
    from lucyd.deconv.stats import image_stats_for

    data = rng.gamma(2.0, 10.0, (20, 30, 26)).astype(np.float32) + 1
    lazy = _CountingChunks(data, (8, 8, 8))
    # a budget of ~4 chunks per block: thinner than the chunks' 8 planes if taken as whole planes
    stats = image_stats_for(lazy, 0.0, 0.0, "auto", budget=8 * 4 * 4 * 8**3)
    whole = image_stats_for(data, 0.0, 0.0, "auto")
    assert stats.start_value == pytest.approx(float(data.mean(dtype=np.float64)), rel=1e-6)
    assert stats.floor == pytest.approx(float(data.min())) == whole.floor
    grid = [-(-n // 8) for n in data.shape]
    assert sorted(lazy.decoded) == sorted(np.ndindex(*grid))  # every chunk, each exactly once
    assert set(lazy.decoded.values()) == {1}


def test_image_stats_of_a_chunked_store_decode_each_chunk_once(rng):
    """The input check of `lucyd predict` (lucyd.io.image_stats) streams whole chunks: planes
    thinner than the chunks would decode each chunk once per slab."""
    from lucyd.io.api import image_stats

    data = rng.gamma(2.0, 10.0, (20, 30, 26)).astype(np.float32)
    lazy = _CountingChunks(data, (8, 8, 8))
    stats = image_stats(lazy, block_bytes=4 * 4 * 8**3)
    assert stats["mean"] == pytest.approx(float(data.mean(dtype=np.float64)), rel=1e-6)
    assert (stats["min"], stats["max"], stats["nonfinite"]) == (data.min(), data.max(), 0)
    assert set(lazy.decoded.values()) == {1} and len(lazy.decoded) == 3 * 4 * 4
