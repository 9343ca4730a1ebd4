"""Nuclei tests run torch single-threaded: on a shared 2-core machine two OpenMP threads
spin-wait for each other and run up to ten times slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
