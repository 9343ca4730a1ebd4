"""Training datasets, registered by name (``create_dataset``, ``list_datasets``).

Each module registers its datasets when imported; the list below imports them all, so a new
module is added here.
"""

from histolatent.datasets import (  # noqa: F401  (each module registers its datasets)
    digits,
    glas,
    grid_crops,
    nic_patches,
    nuclei_tiles,
    pcam,
    synth_cells,
    synth_digits,
    synth_nuclei_crops,
)
from histolatent.datasets.registry import (
    create_dataset,
    dataset_class,
    list_datasets,
    register_dataset,
)

__all__ = ["create_dataset", "dataset_class", "list_datasets", "register_dataset"]
