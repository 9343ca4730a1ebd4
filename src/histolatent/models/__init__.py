"""One file per method; each registers itself with :func:`register_model`.

Add a new model module to ``_MODULES`` below: importing it is what registers it.
"""

from importlib import import_module

from histolatent.models.base import PlainOptimizers, RepresentationModel
from histolatent.models.registry import create_model, list_models, model_class, register_model

_MODULES = [
    "autoencoder",
    "vae",
    "se2n_vae",
    "infogan",
    "unet",
    "colorizer",
    "target_vae", "spatial_vae", "vae_baselines",
]

for _m in _MODULES:
    import_module(f"histolatent.models.{_m}")

__all__ = [
    "PlainOptimizers",
    "RepresentationModel",
    "create_model",
    "list_models",
    "model_class",
    "register_model",
]
