"""The "flying shapes" synthetic video benchmark: exact labels and flow for every frame."""

from featflow.data.synthetic.classes import CLASS_NAMES, NUM_CLASSES, OBJECT_CLASSES
from featflow.data.synthetic.degrade import Degradations
from featflow.data.synthetic.scene import SPEED_CATEGORIES, SynthConfig
from featflow.data.synthetic.video import SPLITS, FrameAnnotation, SyntheticVideo

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "OBJECT_CLASSES",
    "SPEED_CATEGORIES",
    "SPLITS",
    "Degradations",
    "FrameAnnotation",
    "SynthConfig",
    "SyntheticVideo",
]
