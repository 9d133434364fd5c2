"""Forward model of image formation: blur (FFT convolution) and camera noise."""

from lucyd.forward.convolution import BOUNDARIES, convolve
from lucyd.forward.noise import camera_noise

__all__ = ["convolve", "camera_noise", "BOUNDARIES"]
