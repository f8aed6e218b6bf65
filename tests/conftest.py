import numpy as np
import pytest
import torch

from featflow.data.synthetic import Degradations, SynthConfig
from featflow.engine.checkpoint import save_detector, save_segmenter
from featflow.methods.detection import VideoDetector
from featflow.methods.segmentation import VideoSegmenter
from featflow.modeling.rpn import RPNConfig

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


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A DFF segmenter and an FGFA detector with random weights, small enough for tests."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    seg = VideoSegmenter(4, "resnet18", channels=16, flow_net="flownet_inception")
    save_segmenter(folder / "seg.safetensors", seg, ["bg", "a", "b", "c"])
    det = VideoDetector(3, "resnet18", 16, "flownet_inception", "adaptive", rpn=RPNConfig(anchor_sizes=(16, 32)))
    save_detector(folder / "det.safetensors", det, ["a", "b", "c"])
    return folder / "seg.safetensors", folder / "det.safetensors"
