import numpy as np
import pytest
import torch

from featflow.data.synthetic import Degradations, SynthConfig

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def clean_config() -> SynthConfig:
    """Small frames, no degradations: for checks of the exact ground truth."""
    return SynthConfig(height=96, width=160, num_frames=24, degradations=Degradations.off())


@pytest.fixture(scope="session")
def small_config() -> SynthConfig:
    return SynthConfig(height=64, width=128, num_frames=30)


def tree_bytes(root) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (for byte-for-byte comparisons)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
