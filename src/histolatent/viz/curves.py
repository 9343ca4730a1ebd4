"""Training curves: drawn by :func:`histolatent.train.figures.training_curves`.

Kept only so that ``train/engine.py``'s ``from histolatent.viz.curves import training_curves``
resolves until it imports ``histolatent.train.figures`` itself; then delete this module.
"""

from histolatent.train.figures import training_curves

__all__ = ["training_curves"]
