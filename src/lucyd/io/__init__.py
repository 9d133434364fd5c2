"""Image input/output with metadata: ImageJ TIFF, OME-TIFF, OME-Zarr (NGFF 0.5), ``.npy``, and
CZI / ND2 / LIF through bioio (``lucyd[formats]``); time series and channels with
:func:`read_hyperstack` and :func:`lucyd.io.hyperstack.map_volumes`.

>>> from lucyd.io import read_image, write_image, ImageMetadata
>>> image, meta = read_image("nuclei.tif")  # doctest: +SKIP
>>> write_image("nuclei.ome.zarr", image, meta)  # doctest: +SKIP
"""

from lucyd.io._arrays import LazyImage
from lucyd.io.api import (
    ImageInfo,
    format_from_path,
    image_info,
    open_writer,
    read_hyperstack,
    read_image,
    read_metadata,
    write_image,
)
from lucyd.io.atomic import atomic_path
from lucyd.io.metadata import HyperstackMetadata, ImageMetadata, unit_to_micrometre

__all__ = [
    "ImageInfo",
    "HyperstackMetadata",
    "ImageMetadata",
    "LazyImage",
    "atomic_path",
    "format_from_path",
    "image_info",
    "open_writer",
    "read_hyperstack",
    "read_image",
    "read_metadata",
    "unit_to_micrometre",
    "write_image",
]
