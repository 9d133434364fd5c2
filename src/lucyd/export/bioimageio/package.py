"""Reading bioimage.io packages: what a path is, and lucyd's own packages back as models.

A bioimage.io model package is a zip file (or its unpacked folder) holding a resource
description ``rdf.yaml`` (or ``bioimageio.yaml`` / ``*.bioimageio.yaml``) beside the files it
names. Packages written by :func:`lucyd.export.bioimageio.export_bioimageio` carry a
``config.lucyd`` entry naming the model card (``model.json``) and the PyTorch state dict; such a
package loads back as the very :class:`~lucyd.train.RestorationModel` its model folder gives
(:func:`load_lucyd_package`), without bioimageio.spec or bioimageio.core installed.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath

import torch
import yaml

from lucyd.errors import FileFormatError
from lucyd.train.card import ModelCard
from lucyd.train.loading import model_from_weights

#: file names of a bioimage.io resource description (the first one found is used)
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
#: ``config`` key of lucyd's entry in the rdf of packages it wrote
CONFIG_KEY = "lucyd"


def _is_rdf_name(name: str) -> bool:
    return name in RDF_NAMES or name.endswith(".bioimageio.yaml")


class PackageFiles:
    """The files of a package: a zip file, an unpacked folder, or the rdf file in one.

    ``read(name)`` returns a file's bytes; ``rdf`` is the parsed description (a dict).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            names = [n for n in self._zip.namelist() if "/" not in n.rstrip("/")]
            rdf = next((n for n in RDF_NAMES if n in names), None) or next(
                (n for n in names if _is_rdf_name(n)), None
            )
            self.root = None
        elif self.path.is_dir():
            self.root = self.path
            rdf = next((n for n in RDF_NAMES if (self.path / n).is_file()), None) or next(
                (p.name for p in sorted(self.path.glob("*.bioimageio.yaml"))), None
            )
        elif self.path.is_file() and _is_rdf_name(self.path.name):
            self.root, rdf = self.path.parent, self.path.name
        else:
            raise FileFormatError(f"{self.path}: not a bioimage.io package (a zip file or folder)")
        if rdf is None:
            raise FileFormatError(
                f"{self.path}: not a bioimage.io package (no {' or '.join(RDF_NAMES)} in it)"
            )
        self.rdf_name = rdf
        self.rdf = self._parse_rdf(self.read(rdf))

    def _parse_rdf(self, text: bytes) -> dict:

        try:
            rdf = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise FileFormatError(f"{self.path}: unreadable {self.rdf_name} ({first})") from None
        if not isinstance(rdf, dict):
            raise FileFormatError(f"{self.path}: {self.rdf_name} is not a resource description")
        return rdf

    def read(self, name: str) -> bytes:
        """The bytes of the package file ``name`` (a relative path inside the package)."""
        rel = PurePosixPath(str(name))
        if rel.is_absolute() or ".." in rel.parts or "://" in str(name):
            raise FileFormatError(f"{self.path}: file {name!r} is not inside the package")
        try:
            if self._zip is not None:
                return self._zip.read(str(rel))
            return (self.root / rel).read_bytes()
        except (KeyError, OSError):
            raise FileFormatError(f"{self.path}: the package lacks {name}") from None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> PackageFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_bioimageio_package(path: str | Path) -> bool:
    """True when ``path`` is a bioimage.io package: a zip file or folder with an rdf, or the rdf.

    A lucyd model or ensemble folder (no rdf) is not one; an unpacked package is, although it
    holds the model card ``model.json`` too.
    """
    path = Path(path)
    if path.is_dir():
        return any((path / n).is_file() for n in RDF_NAMES) or any(
            path.glob("*.bioimageio.yaml")
        )
    if path.is_file() and _is_rdf_name(path.name):
        return True
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return any(_is_rdf_name(n) for n in zf.namelist() if "/" not in n)
    return False


def lucyd_entry(rdf: dict) -> dict | None:
    """``config.lucyd`` of a package's description (packages lucyd wrote), else None."""
    config = rdf.get("config")
    entry = config.get(CONFIG_KEY) if isinstance(config, dict) else None
    return entry if isinstance(entry, dict) else None


def load_lucyd_package(path: str | Path, *, fuse_batch_norm: bool = True):
    """The :class:`~lucyd.train.RestorationModel` of a package written by lucyd.

    Reads the model card (``model.json``) and the ``pytorch_state_dict`` weights named in the
    description's ``config.lucyd`` entry and rebuilds the network as :func:`lucyd.train.load_model`
    does (:func:`lucyd.train.model_from_weights`), so the package restores exactly as its model
    folder did (same weights, same normalisation, same tiling).

    Raises
    ------
    FileFormatError
        Not a bioimage.io package, not one written by lucyd, missing or corrupt files.
    """
    with PackageFiles(path) as files:
        entry = lucyd_entry(files.rdf)
        if entry is None:
            raise FileFormatError(f"{path}: a bioimage.io package not written by lucyd")
        card_name, weights_name = entry.get("card"), entry.get("state_dict")
        if not card_name or not weights_name:
            raise FileFormatError(f"{path}: config.lucyd lacks the card or state_dict file name")
        try:
            card_data = json.loads(files.read(card_name))
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"{path}: unreadable {card_name} ({exc})") from None
        card = ModelCard.from_dict(card_data, f"{path}:{card_name}")
        try:
            state = torch.load(
                io.BytesIO(files.read(weights_name)), map_location="cpu", weights_only=True
            )
        except FileFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to unpickle = corrupt file
            raise FileFormatError(
                f"{path}: corrupt or unreadable weights {weights_name} ({type(exc).__name__})"
            ) from None
    if not isinstance(state, dict):
        raise FileFormatError(f"{path}: {weights_name} is not a state dict")
    return model_from_weights(
        card, state, Path(path), fuse_batch_norm=fuse_batch_norm,
        weights_name=f"{path}:{weights_name}",
    )
