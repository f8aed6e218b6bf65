"""The "flying shapes" synthetic video benchmark: exact labels and flow for every frame."""

from featflow.data.synthetic.classes import CLASS_NAMES, NUM_CLASSES, OBJECT_CLASSES
from featflow.data.synthetic.degrade import Degradations
from featflow.data.synthetic.scene import GEOMETRIES, SPEED_CATEGORIES, SynthConfig
from featflow.data.synthetic.video import DETERIORATIONS, SPLITS, FrameAnnotation, SyntheticVideo

__all__ = [
    "CLASS_NAMES",
    "DETERIORATIONS",
    "GEOMETRIES",
    "NUM_CLASSES",
    "OBJECT_CLASSES",
    "SPEED_CATEGORIES",
    "SPLITS",
    "Degradations",
    "FrameAnnotation",
    "SynthConfig",
    "SyntheticVideo",
]
