"""Validated job configurations, saved beside their outputs for reproducibility.

Every job (deconvolution, synthesis, training, demo, benchmark) has one pydantic
model deriving from :class:`JobConfig`; ``config.save(path)`` writes it as JSON
(atomically) together with the lucyd version, and ``Config.load(path)`` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

import lucyd
from lucyd.errors import FileFormatError, InputError
from lucyd.io.atomic import atomic_path


def validation_message(exc: ValidationError, label: str = "") -> str:
    """One line naming the first invalid field of a pydantic error, e.g. ``"train config: lr: ..."``."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "config"
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{label}: {loc}: {msg}" if label else f"{loc}: {msg}"


class JobConfig(BaseModel):
    """Base class: unknown fields are rejected, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    #: prefix of the one-line error messages of :meth:`build` (e.g. "train config")
    error_label: ClassVar[str] = ""

    @classmethod
    def build(cls, **kwargs: Any) -> Self:
        """Like ``cls(**kwargs)`` but raising :class:`InputError` with one line naming the field."""
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            raise InputError(validation_message(exc, cls.error_label)) from None

    def to_json(self) -> str:

        payload = {
            "lucyd_version": lucyd.__version__,
            "kind": type(self).__name__,
            "config": self.model_dump(mode="json"),
        }
        return json.dumps(payload, indent=2)

    def save(self, path: str | Path) -> Path:
        """Write the configuration as JSON (atomically) and return the path."""

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileFormatError(f"{path}: configuration file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise FileFormatError(f"{path}: not a readable JSON configuration ({exc})") from None
        data = payload.get("config", payload) if isinstance(payload, dict) else payload
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InputError(validation_message(exc, f"{path}: invalid {cls.__name__}")) from None
