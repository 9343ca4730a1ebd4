"""histolatent: unsupervised representation learning for histopathology.

From single nuclei to whole-slide images: SynthPath ground truth, slide I/O, tissue and
stain, nuclei, group-equivariant VAEs, TARGET-VAE, InfoGAN, Neural Image Compression, and
the downstream probes, clustering and reports that put the representations to work.
"""

__version__ = "0.1.0"

from histolatent.errors import ConfigError, InputError  # noqa: E402

__all__ = ["ConfigError", "InputError", "__version__"]
