"""Training datasets; each module registers itself. Add new modules to ``_MODULES``."""

from importlib import import_module

from histolatent.datasets.registry import (
    create_dataset,
    dataset_class,
    list_datasets,
    register_dataset,
)

_MODULES = [
    "digits",
    "synth_cells",
    "synth_digits",
    "nuclei_tiles",
    "synth_nuclei_crops",
    "nic_patches",
]

for _m in _MODULES:
    import_module(f"histolatent.datasets.{_m}")

__all__ = ["create_dataset", "dataset_class", "list_datasets", "register_dataset"]
