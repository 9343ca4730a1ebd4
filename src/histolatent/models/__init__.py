"""One file per method; each registers itself with :func:`register_model`.

Add a new model module to the import below: importing it is what registers it, and this
file runs before any module of the package, so the registry always holds every built-in
model. :func:`load_model` / :func:`save_weights` read and write a trained model's files.
"""

from histolatent.models import (  # noqa: F401  (importing a method's module registers it)
    attention_mil,
    autoencoder,
    colorizer,
    dim,
    drl,
    infogan,
    mean_rgb,
    nic_bigan,
    nic_oracle,
    nic_siamese,
    nic_vae,
    se2n_vae,
    slide_cnn,
    spatial_vae,
    target_vae,
    transfer,
    unet,
    vae,
    vae_baselines,
    vgg_vae,
)
from histolatent.models.base import PlainOptimizers, RepresentationModel
from histolatent.models.registry import create_model, list_models, model_class, register_model
from histolatent.models.weights import copy_weights, load_model, save_weights

__all__ = [
    "PlainOptimizers",
    "RepresentationModel",
    "copy_weights",
    "create_model",
    "list_models",
    "load_model",
    "model_class",
    "register_model",
    "save_weights",
]
