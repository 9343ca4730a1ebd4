"""The training engine (Lightning Fabric): ``fit``, run folders, ``load_model``.

Importing this package also registers the colourisation stain normaliser
(:class:`~histolatent.train.colorizer.ColorizationNormalizer`, ``"colorizer"``), whose
``fit`` is a training run.

Example
-------
>>> from histolatent.train import fit, load_model
>>> run = fit("configs/autoencoder-digits.yaml", overrides=["train.steps=50"])  # doctest: +SKIP
>>> model = load_model(run)                                                    # doctest: +SKIP
"""

from histolatent.train.colorizer import ColorizationNormalizer  # registers "colorizer"
from histolatent.train.config import RunConfig, TrainConfig, load_run_config
from histolatent.train.data import ArrayDataset
from histolatent.train.engine import fit
from histolatent.train.run import list_runs, load_model, read_metrics, run_summary

__all__ = ["ArrayDataset", "ColorizationNormalizer", "RunConfig", "TrainConfig", "fit", "list_runs", "load_model",
           "load_run_config", "read_metrics", "run_summary"]
