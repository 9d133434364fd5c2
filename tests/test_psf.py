"""Tests of lucyd.psf: model PSFs against analytic results, a reference PSF and independent
implementations; confocal; bead-based measurement; errors; the ``lucyd psf`` command."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy import special
from typer.testing import CliRunner

from lucyd.errors import InputError
from lucyd.psf import (
    born_wolf,
    confocal,
    from_beads,
    fwhm,
    gaussian,
    gibson_lanni,
    make_psf,
    vectorial,
)
from lucyd.psf.models import gaussian_sigmas

MODELS = ["gaussian", "born-wolf", "gibson-lanni", "vectorial"]
OPTICS = dict(na=1.2, wavelength=0.52, ni=1.33)


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def centre(shape):
    return tuple(n // 2 for n in shape)


# ------------------------------------------------------------------------ output contract


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", [(9, 21, 25), (21, 25)])
def test_output_contract(model, shape):
    voxel = (0.25, 0.08, 0.08)[-len(shape) :]
    psf = make_psf(model, shape, voxel, **OPTICS)
    assert psf.shape == shape and psf.dtype == np.float32
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    assert psf.min() >= 0
    assert np.unravel_index(int(np.argmax(psf)), shape) == centre(shape)
    # circular symmetry about the centre voxel
    np.testing.assert_allclose(psf, psf[..., ::-1], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(psf, psf[..., ::-1, :], rtol=1e-5, atol=1e-9)
    inner = psf[..., 2:-2, :][..., :, 4:-4]  # square (…, 17, 17) centred window
    np.testing.assert_allclose(inner, np.swapaxes(inner, -1, -2), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("model", MODELS)
def test_2d_is_central_plane_of_3d(model):
    voxel = (0.2, 0.07, 0.07)
    p3 = make_psf(model, (7, 31, 31), voxel, **OPTICS).astype(np.float64)
    p2 = make_psf(model, (31, 31), voxel[1:], **OPTICS).astype(np.float64)
    plane = p3[3] / p3[3].sum()
    np.testing.assert_allclose(p2, plane, rtol=2e-5, atol=1e-9)


def test_underscore_names_and_speed():
    t0 = time.perf_counter()
    psf = make_psf("born_wolf", (33, 65, 65), (0.3, 0.13, 0.13), na=1.45, wavelength=0.461,
                   ni=1.512)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"33x65x65 Born-Wolf took {elapsed:.2f} s"
    np.testing.assert_array_equal(
        psf, born_wolf((33, 65, 65), (0.3, 0.13, 0.13), na=1.45, wavelength=0.461, ni=1.512)
    )


# ------------------------------------------------------------------------ analytic physics


@pytest.mark.parametrize("model", MODELS)
def test_lateral_fwhm_is_051_lambda_over_na(model):
    # moderate NA (0.8; oil so that the vectorial depolarisation stays small), fine pixels
    na, lam = 0.8, 0.5
    psf = make_psf(model, (121, 121), (0.01, 0.01), na=na, wavelength=lam, ni=1.515)
    wy, wx = fwhm(psf, (0.01, 0.01))
    target = 0.51 * lam / na
    assert wy == pytest.approx(wx)
    assert abs(wx / target - 1) < 0.05, f"{model}: FWHM {wx:.4f} µm vs {target:.4f} µm"


def test_vectorial_broader_than_scalar_at_high_aperture():
    # depolarisation widens the focal spot of an unpolarised emitter at large angles
    kw = dict(na=1.4, wavelength=0.5, ni=1.515)
    scalar = fwhm(gibson_lanni((101, 101), (0.01, 0.01), ns=1.515, **kw), 0.01)[1]
    vector = fwhm(vectorial((101, 101), (0.01, 0.01), **kw), 0.01)[1]
    assert 1.04 < vector / scalar < 1.2


def test_born_wolf_in_focus_is_airy_pattern():
    na, lam, dx = 1.0, 0.5, 0.02
    psf = born_wolf((1, 151), (1.0, dx), na=na, wavelength=lam, ni=1.33, oversampling=1)[0]
    r = np.abs(np.arange(151) - 75) * dx
    v = 2 * np.pi / lam * na * r
    with np.errstate(invalid="ignore", divide="ignore"):
        airy = np.where(v > 0, (2 * special.j1(v) / v) ** 2, 1.0)
    np.testing.assert_allclose(psf / psf[75], airy, atol=2e-6)


def test_born_wolf_on_axis_is_paraxial_sinc():
    na, lam, ni, dz = 1.2, 0.5, 1.33, 0.05
    psf = born_wolf((121, 1, 1), (dz, 0.05, 0.05), na=na, wavelength=lam, ni=ni,
                    oversampling=1)[:, 0, 0]
    z = (np.arange(121) - 60) * dz
    quarter_u = 2 * np.pi / lam * na**2 * z / ni / 4
    expected = np.sinc(quarter_u / np.pi) ** 2
    np.testing.assert_allclose(psf / psf[60], expected, atol=2e-6)


def test_gibson_lanni_matched_on_axis_is_exact_defocus():
    # closed form of |∫0^1 exp(-i k z sqrt(ni² - NA²ρ²)) ρ dρ|²
    na, lam, ni, dz = 1.3, 0.55, 1.515, 0.05
    psf = gibson_lanni((121, 1, 1), (dz, 0.05, 0.05), na=na, wavelength=lam, ni=ni, ns=ni,
                       ng=ni, oversampling=1)[:, 0, 0]
    z = (np.arange(121) - 60) * dz
    a = 2 * np.pi / lam * z
    q1 = math.sqrt(ni**2 - na**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        def prim(q):
            return np.exp(-1j * a * q) * (1 + 1j * a * q) / a**2
        amp = (prim(ni) - prim(q1)) / na**2
    amp[60] = 0.5
    expected = np.abs(amp) ** 2 / 0.25
    np.testing.assert_allclose(psf / psf[60], expected, atol=5e-6)


def test_born_wolf_exact_defocus_equals_matched_gibson_lanni():
    kw = dict(na=1.1, wavelength=0.6, ni=1.33)
    a = born_wolf((15, 21, 21), (0.2, 0.1, 0.1), paraxial=False, **kw)
    b = gibson_lanni((15, 21, 21), (0.2, 0.1, 0.1), ns=1.33, ng=1.52, **kw)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


def test_gaussian_widths():
    # the non-paraxial widths of Zhang et al. 2007 tend to the paraxial ones at low NA
    s_np = gaussian_sigmas(na=0.1, wavelength=0.5, ni=1.0)
    s_p = gaussian_sigmas(na=0.1, wavelength=0.5, ni=1.0, paraxial=True)
    np.testing.assert_allclose(s_np, s_p, rtol=5e-3)
    # and the voxel-integrated Gaussian has FWHM = 2.3548 sigma for fine voxels
    sr, sz = gaussian_sigmas(na=1.2, wavelength=0.5, ni=1.33)
    psf = gaussian((61, 61, 61), (sz / 8, sr / 8, sr / 8), na=1.2, wavelength=0.5, ni=1.33)
    wz, wy, _ = fwhm(psf, (sz / 8, sr / 8, sr / 8))
    assert wz / sz == pytest.approx(2.3548, rel=5e-3) and wy / sr == pytest.approx(2.3548, rel=5e-3)


def test_pixel_integration_matters_for_coarse_pixels():
    kw = dict(na=1.45, wavelength=0.461, ni=1.512)
    point = born_wolf((31, 31), (0.13, 0.13), oversampling=1, **kw)
    area = born_wolf((31, 31), (0.13, 0.13), **kw)
    # area-averaging flattens the peak: the neighbour/peak ratio rises (0.14 -> 0.23)
    assert area[15, 16] / area[15, 15] > point[15, 16] / point[15, 15] + 0.05
    finer = born_wolf((31, 31), (0.13, 0.13), oversampling=9, **kw)
    np.testing.assert_allclose(area, finer, atol=2e-3 * float(finer.max()))


# --------------------------------------------------------------------- reference PSF (real)


@pytest.mark.realdata
def test_born_wolf_reproduces_deconwolf_psf_dapi(real_data):
    import tifffile

    ref = tifffile.imread(real_data("widefield_dapi", "PSF_dapi.tif")).astype(np.float64)
    ours = born_wolf(ref.shape, (0.3, 0.13, 0.13), na=1.45, wavelength=0.461, ni=1.512)
    assert ours.shape == (79, 181, 181)
    c = corr(ours, ref)
    assert c >= 0.9999, c
    assert np.abs(ours - ref / ref.sum()).sum() < 5e-3
    # the check discriminates: the exact (non-paraxial) defocus is visibly different
    other = born_wolf(ref.shape, (0.3, 0.13, 0.13), na=1.45, wavelength=0.461, ni=1.512,
                      paraxial=False)
    assert corr(other, ref) < 0.98


# -------------------------------------------------------------- independent implementations

MISMATCH = [
    # (NA, ni, ni0, ns, ng, ng0, tg, particle depth µm)
    (1.4, 1.515, 1.515, 1.515, 1.515, 1.515, 170.0, 0.0),
    (1.3, 1.515, 1.515, 1.33, 1.515, 1.515, 170.0, 2.0),
    (1.4, 1.518, 1.515, 1.45, 1.52, 1.515, 175.0, 5.0),
]


def _params(case):
    na, ni, ni0, ns, ng, ng0, tg, pz = case
    ours = dict(na=na, wavelength=0.6, ni=ni, ni0=ni0, ns=ns, ng=ng, ng0=ng0, tg=tg, tg0=170.0,
                ti0=150.0, particle_depth=pz)
    theirs = dict(NA=na, ni=ni, ni0=ni0, ns=ns, ng=ng, ng0=ng0, tg=tg, tg0=170.0, ti0=150.0)
    return ours, theirs, pz


@pytest.mark.parametrize("case", MISMATCH)
def test_against_psfmodels(case):
    """psfmodels (Aguet's C++ code, GPL-3, test-only): scalar and vectorial agree."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        psfmodels = pytest.importorskip("psfmodels")
    ours, theirs, pz = _params(case)
    nz, nx, dz, dxy = 21, 31, 0.25, 0.06
    zv = (np.arange(nz) - nz // 2) * dz + pz  # their z: focus position from the coverslip
    shape, voxel = (nz, nx, nx), (dz, dxy, dxy)
    # psfmodels averages 3x3 sub-pixels: use the same pixel integration
    ref_s = psfmodels.scalar_psf(zv, nx, dxy, pz, 0.6, theirs)
    ref_v = psfmodels.vectorial_psf(zv, nx, dxy, pz, 0.6, theirs)
    assert corr(gibson_lanni(shape, voxel, oversampling=3, **ours), ref_s) >= 0.9999
    assert corr(vectorial(shape, voxel, oversampling=3, **ours), ref_v) >= 0.9999


@pytest.mark.parametrize("case", MISMATCH[1:])
def test_gibson_lanni_against_microscpsf(case):
    """MicroscPSF-Py (Li, Xue & Blu's Bessel-series Gibson–Lanni, MIT, test-only)."""
    msp = pytest.importorskip("microscPSF.microscPSF")
    ours, theirs, pz = _params(case)
    nz, nx, dz, dxy = 13, 21, 0.3, 0.07
    z = (np.arange(nz) - nz // 2) * dz
    # their zv is the immersion-thickness change ti - ti0; ours puts the paraxial focus at 0
    ti = theirs["ni"] * (150.0 / theirs["ni0"] + 170.0 / theirs["ng0"] - theirs["tg"] / theirs["ng"]
                         - pz / theirs["ns"]) - z
    mp = dict(msp.m_params, **theirs)
    ref = msp.gLXYZFocalScan(mp, dxy, nx, ti - 150.0, pz=pz, wvl=0.6)
    # 0.99992-0.99994 measured; their Bessel-series fit and 2x radial sampling limit it
    assert corr(gibson_lanni((nz, nx, nx), (dz, dxy, dxy), oversampling=1, **ours), ref) >= 0.999


def test_particle_depth_mismatch_shifts_and_broadens():
    kw = dict(na=1.4, wavelength=0.6, ni=1.515, ns=1.33)
    shape, voxel = (41, 21, 21), (0.2, 0.08, 0.08)
    shallow = gibson_lanni(shape, voxel, particle_depth=0.0, **kw)
    deep = gibson_lanni(shape, voxel, particle_depth=20.0, **kw)
    assert fwhm(deep, voxel)[0] > 1.5 * fwhm(shallow, voxel)[0]  # spherical aberration
    assert deep.max() < 0.5 * shallow.max()
    # with matched indices depth changes nothing
    same = gibson_lanni(shape, voxel, particle_depth=20.0, **dict(kw, ns=1.515))
    np.testing.assert_allclose(same, gibson_lanni(shape, voxel, **dict(kw, ns=1.515)),
                               rtol=1e-4, atol=1e-9)


# ---------------------------------------------------------------------------------- confocal


@pytest.mark.parametrize("model", ["gaussian", "born-wolf", "gibson-lanni", "vectorial"])
def test_confocal_narrower_than_widefield(model):
    shape, voxel = (11, 41, 41), (0.15, 0.03, 0.03)
    kw = dict(na=1.2, ni=1.33)
    wide = make_psf(model, shape, voxel, wavelength=0.5, **kw)
    small = confocal(model, shape, voxel, excitation_wavelength=0.5, emission_wavelength=0.5,
                     pinhole_au=0.05, **kw)
    one_au = confocal(model, shape, voxel, excitation_wavelength=0.5, emission_wavelength=0.5,
                      pinhole_au=1.0, **kw)
    for psf in (small, one_au):
        assert psf.dtype == np.float32 and psf.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.unravel_index(int(np.argmax(psf)), shape) == centre(shape)
    w = fwhm(wide, voxel)[2]
    ratio_small = fwhm(small, voxel)[2] / w
    ratio_one = fwhm(one_au, voxel)[2] / w
    assert 0.68 < ratio_small < 0.76  # ≈ 1/√2 for a point detector
    assert ratio_small < ratio_one < 1.0


# --------------------------------------------------------------------------------- beads


def _bead_image(rng, truth_big, centres, photons=2e5, background=10.0):
    img = np.zeros((36, 128, 128))
    hz, hy, hx = (n // 2 for n in truth_big.shape)
    true_pos = []
    for c in centres:
        d = rng.uniform(-0.5, 0.5, 3)
        shifted = ndi.shift(truth_big, d, order=3, mode="constant")  # spline, not Fourier
        img[c[0] - hz : c[0] + hz + 1, c[1] - hy : c[1] + hy + 1, c[2] - hx : c[2] + hx + 1] += (
            photons * shifted
        )
        true_pos.append(np.asarray(c) + d)
    return rng.poisson(img + background).astype(np.float64), true_pos


def test_from_beads_recovers_known_psf(rng):
    voxel = (0.2, 0.08, 0.08)
    big = born_wolf((31, 41, 41), voxel, na=1.2, wavelength=0.52, ni=1.33).astype(np.float64)
    truth = big[6:25, 10:31, 10:31]
    truth /= truth.sum()
    centres = [(16, 22, 22), (18, 22, 70), (20, 64, 40), (17, 100, 100), (19, 64, 100),
               (16, 102, 28)]
    img, true_pos = _bead_image(rng, big, centres)
    psf, report = from_beads(img, voxel, shape=(19, 21, 21), return_report=True)
    assert psf.shape == (19, 21, 21) and psf.dtype == np.float32
    assert psf.sum() == pytest.approx(1.0, abs=1e-5) and psf.min() >= 0
    assert len(report.used) == 6 and report.background == pytest.approx(10.0, abs=1.0)
    found = sorted(report.used)
    for t in sorted(true_pos, key=tuple):
        nearest = min(found, key=lambda u: np.abs(np.subtract(u, t)).max())
        assert np.abs(np.subtract(nearest, t)).max() < 0.15
    assert corr(psf, truth) > 0.99
    assert np.unravel_index(int(np.argmax(psf)), psf.shape) == (9, 10, 10)


def test_from_beads_rejects_neighbours_and_border(rng):
    voxel = (0.2, 0.08, 0.08)
    big = born_wolf((31, 41, 41), voxel, na=1.2, wavelength=0.52, ni=1.33).astype(np.float64)
    # two beads 8 px apart (inside each other's crop), one isolated, one near the y border
    centres = [(18, 40, 40), (18, 40, 48), (18, 90, 90), (18, 21, 100)]
    img, _ = _bead_image(rng, big, centres)
    img[:, :2, :] = 10  # cut the last bead's image short so its centre is ~19 px from the edge
    psf, report = from_beads(img, voxel, shape=(15, 21, 21), border=20, return_report=True)
    assert report.candidates == 4 and report.rejected_neighbour == 2
    assert report.rejected_border == 1 and len(report.used) == 1
    assert abs(report.used[0][1] - 90) < 1 and abs(report.used[0][2] - 90) < 1


def test_from_beads_2d(rng):
    big = born_wolf((41, 41), (0.08, 0.08), na=1.2, wavelength=0.52, ni=1.33).astype(np.float64)
    img = np.zeros((120, 120))
    for c in [(30, 30), (30, 90), (90, 60)]:
        img[c[0] - 20 : c[0] + 21, c[1] - 20 : c[1] + 21] += 1e5 * big
    img = rng.poisson(img + 5).astype(np.float64)
    psf = from_beads(img, shape=(21, 21))
    assert corr(psf, big[10:31, 10:31]) > 0.995
    assert np.unravel_index(int(np.argmax(psf)), psf.shape) == (10, 10)


@pytest.mark.realdata
def test_from_beads_single_real_bead_is_recentred(real_data):
    import tifffile

    raw = tifffile.imread(real_data("confocal_beads", "psf_45cube_ec13757.tif"))
    psf = from_beads(raw, (0.125, 0.022, 0.022), shape=(45, 45, 45))
    assert psf.shape == (45, 45, 45) and psf.dtype == np.float32 and psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    # the raw bead's (smoothed) peak is off-centre; the output's is at the centre voxel
    raw_peak = np.unravel_index(int(np.argmax(ndi.gaussian_filter(raw, 1.0))), raw.shape)
    assert raw_peak != (22, 22, 22)
    out_peak = np.unravel_index(int(np.argmax(ndi.gaussian_filter(psf, 1.0))), psf.shape)
    assert out_peak == (22, 22, 22)
    assert corr(fwhm(psf, 1), fwhm(raw, 1)) > 0.9  # same shape of bead, just moved


@pytest.mark.realdata
def test_from_beads_real_multi_bead_image(real_data):
    import tifffile

    raw = tifffile.imread(real_data("confocal_beads", "Bead_Image1_crop.tif"))
    psf, report = from_beads(raw, (0.125, 0.022, 0.022), shape=(21, 41, 41), return_report=True)
    assert len(report.used) >= 3
    wz, wy, wx = fwhm(psf, (0.125, 0.022, 0.022))
    # a confocal bead PSF: sub-micrometre axially, ~0.15-0.3 µm laterally
    assert 0.3 < wz < 1.0 and 0.1 < wy < 0.35 and 0.1 < wx < 0.35
    assert np.unravel_index(int(np.argmax(ndi.gaussian_filter(psf, 1.0))), psf.shape) == (
        10, 20, 20)


# --------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: born_wolf((32, 65, 65), 0.1, na=1.4, wavelength=0.5, ni=1.515), "odd"),
        (lambda: born_wolf((65,), 0.1, na=1.4, wavelength=0.5, ni=1.515), "2 or 3"),
        (lambda: born_wolf((33, 65, 65), 0.1, na=1.6, wavelength=0.5, ni=1.515), "na"),
        (lambda: vectorial((33, 65, 65), 0.1, na=1.0, wavelength=0.5, ni=1.0), "na"),
        (lambda: gaussian((33, 65, 65), 0.1, na=1.0, wavelength=-0.5, ni=1.33), "wavelength"),
        (lambda: gaussian((33, 65, 65), 0.1, na=1.0, wavelength=520, ni=1.33), "micrometres"),
        (lambda: born_wolf((33, 65, 65), (0.1, 0.1), na=1.0, wavelength=0.5, ni=1.33),
         "voxel_size"),
        (lambda: born_wolf((33, 65, 65), (0.1, 0, 0.1), na=1.0, wavelength=0.5, ni=1.33),
         "voxel_size"),
        (lambda: gibson_lanni((9, 9, 9), 0.1, na=1.45, wavelength=0.5, ni=1.515, ng=1.4), "ng"),
        (lambda: gibson_lanni((9, 9, 9), 0.1, na=1.3, wavelength=0.5, ni=1.515,
                              particle_depth=-1), "particle_depth"),
        (lambda: born_wolf((9, 9, 9), 0.1, na=1.3, wavelength=0.5, ni=1.515, oversampling=0),
         "oversampling"),
        (lambda: make_psf("airy", (9, 9, 9), 0.1, na=1.0, wavelength=0.5), "born-wolf"),
        (lambda: make_psf("gaussian", (9, 9, 9), 0.1, na=1.0, wavelength=0.5, foo=1), "foo"),
        (lambda: confocal("born-wolf", (9, 9, 9), 0.1, na=1.0, excitation_wavelength=0.48,
                          emission_wavelength=0.52, ni=1.33, pinhole_au=0), "pinhole_au"),
        (lambda: from_beads(np.zeros((20, 20))), "no signal"),
        (lambda: from_beads(np.pad(np.ones((1, 1, 1)), 4), shape=(5, 5)), "shape"),
        (lambda: from_beads(np.full((9, 9), np.nan)), "non-finite"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ------------------------------------------------------------------------------------- CLI


def test_cli_psf_writes_file_with_voxel_size(tmp_path):
    from lucyd.cli.main import app
    from lucyd.io import read_image

    out = tmp_path / "psf.tif"
    args = ["psf", "--model", "born-wolf", "--shape", "9,33,33", "--voxel-size", "0.3,0.13,0.13",
            "--na", "1.45", "--wavelength", "0.461", "--ni", "1.512", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data, meta = read_image(out)
    assert data.shape == (9, 33, 33) and meta.voxel_size == pytest.approx((0.3, 0.13, 0.13))
    assert np.asarray(data, np.float64).sum() == pytest.approx(1.0, abs=1e-5)
    assert "FWHM" in result.stdout and "µm" in result.stdout
    expected = fwhm(born_wolf((9, 33, 33), (0.3, 0.13, 0.13), na=1.45, wavelength=0.461,
                              ni=1.512), (0.3, 0.13, 0.13))
    assert f"y {expected[1]:.4g} µm" in result.stdout


@pytest.mark.parametrize("model", MODELS)
def test_cli_psf_all_models_and_confocal(tmp_path, model):
    from lucyd.cli.main import app
    from lucyd.io import read_image

    out = tmp_path / f"{model}.tif"
    args = ["psf", "--model", model, "--shape", "5,15,15", "--voxel-size", "0.2,0.1,0.1",
            "--na", "1.2", "--wavelength", "0.52", "--ni", "1.33", "--confocal",
            "--excitation-wavelength", "0.488", "--pinhole", "0.8", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data, meta = read_image(out)
    assert data.shape == (5, 15, 15) and meta.voxel_size == pytest.approx((0.2, 0.1, 0.1))


def test_cli_psf_from_beads(tmp_path, rng):
    from lucyd.cli.main import app
    from lucyd.io import ImageMetadata, read_image, write_image

    big = born_wolf((15, 41, 41), (0.2, 0.08, 0.08), na=1.2, wavelength=0.52, ni=1.33)
    img = np.zeros((15, 100, 100))
    for y, x in [(25, 25), (25, 75), (75, 50)]:
        img[:, y - 20 : y + 21, x - 20 : x + 21] += 1e5 * big
    beads = write_image(tmp_path / "beads.tif", rng.poisson(img + 5).astype(np.uint16),
                        ImageMetadata("ZYX", (0.2, 0.08, 0.08)))
    out = tmp_path / "measured.tif"
    result = CliRunner().invoke(app, ["psf", "--from-beads", str(beads), "--shape", "11,21,21",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 bead(s)" in result.stdout
    data, meta = read_image(out)
    assert data.shape == (11, 21, 21) and meta.voxel_size == pytest.approx((0.2, 0.08, 0.08))


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--model", "airy"], "airy"),
        (["--model", "born-wolf", "--shape", "8,33,33"], "odd"),
        (["--model", "born-wolf", "--na", "1.6"], "na"),
        (["--model", "born-wolf", "--shape", "9,x"], "--shape"),
        (["--model", "born-wolf", "--confocal"], "--excitation-wavelength"),
    ],
)
def test_cli_psf_bad_input_one_line_error(tmp_path, args, word):
    from lucyd.cli.main import app

    base = {"--na": "1.2", "--wavelength": "0.5", "--voxel-size": "0.2,0.1,0.1",
            "--shape": "9,15,15"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1] if i + 1 < len(args) else None
    argv = ["psf"]
    for key, value in base.items():
        argv += [key] if value is None else [key, value]
    argv += ["-o", str(tmp_path / "x.tif")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and word in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.tif").exists()
