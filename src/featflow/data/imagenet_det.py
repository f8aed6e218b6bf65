"""ImageNet DET training images as one-frame videos, the way the released DFF / FGFA code mixes them into VID
training: a DET image's key frame or reference frames are the image itself.

Reads ``ImageSets/DET_train_30classes.txt`` and the images and annotations it lists
(``featflow.data.formats.imagenet_det`` has the file formats). The classes are those of the VID data the images are
mixed with (its ``devkit/data/map_vid.txt``, else the 30 official classes), so a label means the same class in
both; objects of DET's other classes are left out (background).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featflow.data.formats import imagenet_det as det
from featflow.data.formats.vid import VID_CLASSES
from featflow.data.vid import VideoBoxesBase, VidVideo
from featflow.errors import MissingInput
from featflow.structures import GroundTruth


class DetDataset(VideoBoxesBase):
    """The images of the DET image set, each a video of one frame: ``image(v, 0)`` is (H, W, 3) uint8 RGB,
    ``targets(v, 0)`` its boxes of ``classes`` (track ids 0..n-1: each object its own track)."""

    def __init__(self, root: str | os.PathLike, classes: tuple[tuple[str, str], ...] = VID_CLASSES) -> None:
        self.root = Path(root)
        self.image_set = self.root / det.DET_IMAGE_SET
        self.classes = classes
        self.class_index = {wnid: i for i, (wnid, _) in enumerate(classes, 1)}
        entries = det.read_det_image_set(self.image_set)
        if not entries:
            raise MissingInput(f"{self.image_set} lists no images")
        self.videos = [VidVideo(name, (name.rsplit("/", 1)[-1],), (image_id,)) for name, image_id in entries]

    def image_path(self, v: int, t: int = 0) -> Path:
        return det.image_path(self.root, self.videos[v].name)

    def annotation_path(self, v: int) -> Path:
        return det.annotation_path(self.root, self.videos[v].name)

    def annotation(self, v: int) -> det.DetAnnotation:
        """Image ``v``'s annotation with every object, of any DET class."""
        return det.read_det_xml(self.annotation_path(v))

    def targets(self, v: int, t: int = 0) -> GroundTruth:
        objects = det.keep_classes(self.annotation(v), self.classes).objects
        return GroundTruth(np.array([o.box for o in objects], np.float32).reshape(-1, 4),
                           np.array([self.class_index[o.name] for o in objects], np.int64),
                           np.arange(len(objects), dtype=np.int64))
