"""histolatent: unsupervised representation learning for histopathology.

What exists today: slide I/O at a physical scale, tissue masks and tile grids, stain
normalisation (Macenko, Reinhard, Vahadane, a neural colouriser), nuclei detection and
segmentation with cell tables, SynthPath ground-truth data, one training engine, and three
representation learners (the SE(2,N)-VAE with z_ISO / z_ORI, TARGET-VAE, an InfoGAN for
nucleus types). ``histolatent.embed`` applies a trained model to cell tables and slides;
``histolatent.downstream`` reads the resulting tables (probes, aggregation, clustering).
Neural Image Compression's slide-level learning and Deformation Representation Learning
are not built yet.
"""

__version__ = "0.1.0"

from histolatent.errors import ConfigError, InputError  # noqa: E402

__all__ = ["ConfigError", "InputError", "__version__"]
