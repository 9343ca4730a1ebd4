"""Model registry: ``create_model(name, **overrides)`` and ``list_models()``."""

from __future__ import annotations

from typing import Any

from histolatent.config import validate
from histolatent.models.base import RepresentationModel
from histolatent.registry import Registry

MODELS: Registry[type[RepresentationModel]] = Registry("model")


def register_model(name: str):
    """Class decorator: register a :class:`RepresentationModel` subclass under ``name``."""

    def deco(cls: type[RepresentationModel]) -> type[RepresentationModel]:
        if not hasattr(cls, "Config"):
            raise TypeError(f"model {cls.__name__} must define a Config class")
        cls.registry_name = name
        return MODELS.register(name)(cls)

    return deco


def model_class(name: str) -> type[RepresentationModel]:
    """The class registered under ``name``.

    The built-in models are registered by ``histolatent/models/__init__.py``, which Python
    runs before any module of the package, so they are always there.
    """
    return MODELS.get(name)


def create_model(name: str, *, source: str = "<create_model>", **overrides: Any) -> RepresentationModel:
    """Build a registered model; unknown or mistyped options raise ``ConfigError``."""
    cls = model_class(name)
    config = validate(cls.Config, overrides, source=source, prefix="model")
    return cls(config)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return MODELS.names()
