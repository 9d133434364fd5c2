"""Forms built from lucyd's parameter schemas (:class:`lucyd.config.JobConfig`), and layer pickers.

A widget never hard-codes a method's parameters: :class:`ConfigForm` makes one magicgui widget
per field of the method's config (integers: spin box; literals, booleans and the boundary
vocabulary: choices; a required folder: a folder picker; anything else: a text field whose
text is parsed as JSON or a comma-separated tuple), and :meth:`ConfigForm.values` returns only
what the user changed, so the schema's defaults stay the documented defaults and pydantic
validates everything in :func:`lucyd.methods.build_method`.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Literal

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, SpinBox
from pydantic_core import PydanticUndefined

from lucyd.boundaries import DECONV_BOUNDARIES
from lucyd.config import JobConfig

__all__ = ["ConfigForm", "LayerPicker", "parse_text"]

_INT_MAX = 10**9
#: fields whose value is a path to a folder (a picker, not a text field)
_FOLDER_FIELDS = ("model",)


def _literal_choices(annotation: Any) -> list | None:
    """The choices of ``Literal[...]`` (or of ``Literal[...] | None``), else None."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    return None


def _plain(annotation: Any, kind: type) -> bool:
    return annotation is kind


def parse_text(text: str) -> Any:
    """A text field's value: JSON (numbers, ``null``, lists, quoted strings), a comma-separated
    tuple (``0.2, 0.1, 0.1``), or the text itself (``auto``)."""
    text = text.strip()
    if text == "":
        return None
    for candidate in (text, f"[{text}]" if "," in text and not text.startswith("[") else None):
        if candidate is None:
            continue
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
    return text


def _default_text(value: Any) -> str:
    if value is None or value is PydanticUndefined:
        return ""
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _minimum(field) -> int:
    for meta in field.metadata:
        for attr in ("ge", "gt"):
            bound = getattr(meta, attr, None)
            if bound is not None:
                return int(bound) + (1 if attr == "gt" else 0)
    return 0


class ConfigForm:
    """A magicgui form for the fields of a :class:`~lucyd.config.JobConfig` subclass.

    Parameters
    ----------
    config : type[JobConfig]
        The schema (e.g. ``get_method("rl").config``).
    exclude : iterable of str
        Fields set by the widget itself (e.g. ``psf_voxel_size`` from the PSF layer's scale).

    Attributes
    ----------
    container : magicgui.widgets.Container
        The form (``container.native`` is its QWidget).
    """

    def __init__(self, config: type[JobConfig], exclude=()):
        self.config = config
        self._widgets: dict[str, tuple[Any, Any]] = {}  # name -> (widget, default shown)
        widgets = []
        for name, field in config.model_fields.items():
            if name in exclude:
                continue
            widget, shown = self._widget_for(name, field)
            tip = (field.description or "").strip()
            if tip:
                widget.tooltip = tip
            self._widgets[name] = (widget, shown)
            widgets.append(widget)
        self.container = Container(widgets=widgets, labels=True)

    @staticmethod
    def _widget_for(name: str, field) -> tuple[Any, Any]:
        annotation = field.annotation
        default = field.default
        label = name.replace("_", " ")
        choices = _literal_choices(annotation)
        if name == "boundary" and _plain(annotation, str):
            choices = list(DECONV_BOUNDARIES)
        if choices is not None and all(isinstance(c, str) for c in choices):
            value = default if default in choices else choices[0]
            return ComboBox(name=name, label=label, choices=choices, value=value), value
        if _plain(annotation, bool):
            return CheckBox(name=name, label=label, value=bool(default)), bool(default)
        if _plain(annotation, int) and isinstance(default, int):
            return SpinBox(name=name, label=label, value=default, min=_minimum(field), max=_INT_MAX), default
        if name in _FOLDER_FIELDS and default is PydanticUndefined:
            return FileEdit(name=name, label=label, mode="d"), None
        text = _default_text(default)
        return LineEdit(name=name, label=label, value=text), text

    def __getitem__(self, name: str):
        return self._widgets[name][0]

    @property
    def names(self) -> list[str]:
        return list(self._widgets)

    def values(self) -> dict[str, Any]:
        """The fields the user changed (or a required field), parsed; schema defaults stay out."""
        out: dict[str, Any] = {}
        for name, (widget, shown) in self._widgets.items():
            value = widget.value
            if isinstance(widget, FileEdit):
                text = str(value) if value is not None else ""
                if text not in ("", "."):
                    out[name] = text
                continue
            if value == shown:
                continue
            out[name] = parse_text(value) if isinstance(widget, LineEdit) else value
        return out


class LayerPicker(ComboBox):
    """A choice of the viewer's image layers, kept up to date as layers come and go.

    ``optional=True`` adds a "(none)" choice (value None).
    """

    def __init__(self, viewer, *, label: str, optional: bool = False, name: str | None = None):
        self._viewer = viewer
        self._optional = optional
        super().__init__(label=label, name=name or label, choices=self._choices)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(lambda *_: self.reset_choices())
        self.reset_choices()

    def _choices(self, _widget=None) -> list:
        from napari.layers import Image

        layers = [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]
        return ([("(none)", None)] if self._optional else []) + layers

    def select(self, layer) -> None:
        """Choose ``layer`` (a layer or its name)."""
        if isinstance(layer, str):
            layer = self._viewer.layers[layer]
        self.reset_choices()
        self.value = layer

