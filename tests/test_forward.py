import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
import torch

from lucyd.errors import InputError
from lucyd.forward import camera_noise, convolve
from lucyd.forward.fft import centre_crop_or_pad, kernel_to_origin
from lucyd.psf import fwhm


@pytest.fixture(params=[2, 3])
def pair(request, rng):
    shape = (24, 30) if request.param == 2 else (10, 14, 12)
    kshape = (7, 5) if request.param == 2 else (5, 7, 3)
    image = rng.random(shape).astype(np.float32)
    psf = rng.random(kshape).astype(np.float32)
    return image, psf / psf.sum()


def test_linear_matches_scipy_fftconvolve(pair):
    image, psf = pair
    ours = convolve(image, psf, boundary="linear", device="cpu")
    ref = scipy.signal.fftconvolve(image.astype(np.float64), psf.astype(np.float64), mode="same")
    assert ours.dtype == np.float32 and ours.shape == image.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_linear_with_psf_larger_than_image(rng):
    image = rng.random((9, 11)).astype(np.float32)
    psf = rng.random((21, 15)).astype(np.float32)
    ours = convolve(image, psf, boundary="linear", device="cpu")
    ref = scipy.signal.fftconvolve(image, psf / psf.sum(), mode="full")[10:19, 7:18]
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_reflect_matches_ndimage(pair):
    image, psf = pair
    ours = convolve(image, psf, boundary="reflect", device="cpu")
    # ndimage.convolve centres the kernel at k//2 and reflects half-sample symmetrically
    ref = ndi.convolve(image.astype(np.float64), psf.astype(np.float64), mode="reflect")
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_circulant_matches_ndimage_wrap(pair):
    image, psf = pair
    ours = convolve(image, psf, boundary="circulant", device="cpu")
    ref = ndi.convolve(image.astype(np.float64), psf.astype(np.float64), mode="wrap")
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_tensor_in_tensor_out(pair):
    image, psf = pair
    out = convolve(torch.from_numpy(image), psf, device="cpu")
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), convolve(image, psf, device="cpu"), rtol=1e-6)


def test_convolution_conserves_flux_in_circulant_mode(pair):
    image, psf = pair
    out = convolve(image, psf, boundary="circulant", device="cpu")
    assert out.sum() == pytest.approx(image.sum(), rel=1e-5)


@pytest.mark.parametrize(
    "psf, message",
    [
        (np.zeros((3, 3)), "all zeros"),
        (np.full((3, 3), np.nan), "non-finite"),
        (-np.ones((3, 3)), "negative"),
        (np.ones((3, 3, 3)), "dimensions"),
    ],
)
def test_bad_psf_is_rejected(psf, message):
    with pytest.raises(InputError, match=message):
        convolve(np.ones((8, 8)), psf, device="cpu")


def test_bad_boundary_and_image():
    with pytest.raises(InputError, match="boundary"):
        convolve(np.ones((8, 8)), np.ones((3, 3)), boundary="mirror")
    with pytest.raises(InputError, match="expected a 2D or 3D"):
        convolve(np.ones(8), np.ones(3))
    with pytest.raises(InputError, match="numeric"):
        convolve(np.array([["a", "b"], ["c", "d"]]), np.ones((3, 3)))


def test_kernel_placement_helpers():
    k = np.arange(15, dtype=np.float32).reshape(3, 5)
    padded = centre_crop_or_pad(k, (7, 9))
    assert padded[3, 4] == k[1, 2] and padded.sum() == k.sum()
    cropped = centre_crop_or_pad(padded, (3, 5))
    np.testing.assert_array_equal(cropped, k)
    at_origin = kernel_to_origin(torch.from_numpy(k), (6, 8))
    assert at_origin[0, 0] == k[1, 2] and at_origin[-1, -1] == k[0, 1]


def test_camera_noise_statistics():
    signal = np.full((200, 200), 4.0)
    counts = camera_noise(signal, photons=5.0, background=10.0, read_noise=2.0, seed=0)
    expected_mean = 5.0 * 4.0 + 10.0
    assert counts.dtype == np.float32
    assert counts.mean() == pytest.approx(expected_mean, rel=0.01)
    # Poisson: variance = mean; plus read-noise variance
    assert counts.var() == pytest.approx(expected_mean + 4.0, rel=0.05)
    again = camera_noise(signal, photons=5.0, background=10.0, read_noise=2.0, seed=0)
    np.testing.assert_array_equal(counts, again)
    with pytest.raises(InputError, match="photons"):
        camera_noise(signal, photons=0)


def test_fwhm_of_gaussian_matches_analytic():
    sigma = (2.0, 3.0)
    y, x = np.mgrid[-20:21, -25:26]
    g = np.exp(-(y**2) / (2 * sigma[0] ** 2) - x**2 / (2 * sigma[1] ** 2))
    expected = tuple(2 * np.sqrt(2 * np.log(2)) * s for s in sigma)
    got = fwhm(g)
    np.testing.assert_allclose(got, expected, rtol=0.02)
    np.testing.assert_allclose(fwhm(g, voxel_size=(0.1, 0.2)), (expected[0] * 0.1, expected[1] * 0.2), rtol=0.02)
