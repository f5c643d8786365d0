"""Shared set-up of the flow tests."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # `import flowcases`, whatever the import mode


@pytest.fixture
def float64(request):
    """Float64 by default and a fixed seed: deterministic inputs, so no test is flaky."""
    if request.config.getoption("--device") == "mps":
        pytest.skip("MPS has no float64")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(1234)
    yield
    torch.set_default_dtype(old)
