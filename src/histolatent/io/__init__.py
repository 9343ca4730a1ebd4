"""File formats: slides, images, tables, grids, and atomic writes.

This is the only package that touches file formats. Submodules are imported lazily so
that ``import histolatent`` stays cheap.
"""

from histolatent.io.atomic import atomic_path, write_bytes_atomic, write_text_atomic

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic"]
