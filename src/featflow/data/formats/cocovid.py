"""mmtracking's "CocoVID" JSON for ImageNet VID: COCO with videos.

Keys: ``categories`` (``id`` 1-based, ``name``, ``encode_name`` = WordNet id), ``videos`` (``id``, ``name``),
``images`` (``id``, ``video_id``, ``frame_id`` 0-based, ``file_name`` relative to ``Data/VID``, ``width``,
``height``), ``annotations`` (``id``, ``image_id``, ``video_id``, ``category_id``, ``instance_id``, ``bbox`` =
[x, y, w, h] with w = xmax - xmin as mmtracking's converter writes it, ``area``, ``iscrowd``, ``occluded``,
``generated``).

``vid_to_cocovid`` converts a VID-layout split; ``CocoVidDataset`` reads a CocoVID file with the same interface
as ``featflow.data.vid.VidDataset`` (so training and evaluation take either).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from featflow.data.io import read_image
from featflow.data.vid import VidDataset, VideoBoxesBase, VidVideo
from featflow.errors import FeatflowError
from featflow.structures import GroundTruth
from featflow.utils.io import write_json


def vid_to_cocovid(data: VidDataset) -> dict:
    """The CocoVID dict of a VID-layout split (boxes, tracks and classes as the XML files have them)."""
    categories = [{"id": i, "name": name, "encode_name": wnid} for i, (wnid, name) in enumerate(data.classes, 1)]
    videos, images, annotations = [], [], []
    for v, video in enumerate(data.videos):
        videos.append({"id": v + 1, "name": f"{data.split}/{video.name}"})
        for t, frame in enumerate(video.frames):
            ann = data.annotation(v, t)
            image_id = len(images) + 1
            width, height = ((ann.width, ann.height) if ann is not None
                             else read_image(data.image_path(v, t)).shape[1::-1])
            images.append({"id": image_id, "video_id": v + 1, "frame_id": t, "width": int(width), "height": int(height),
                           "file_name": f"{data.split}/{video.name}/{frame}.JPEG"})
            for obj in ann.objects if ann is not None else ():
                x1, y1, x2, y2 = obj.box
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "video_id": v + 1,
                                    "category_id": data.class_index[obj.name], "instance_id": obj.track_id,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                    "iscrowd": False, "occluded": obj.occluded, "generated": obj.generated})
    return {"categories": categories, "videos": videos, "images": images, "annotations": annotations}


def write_cocovid(path: str | os.PathLike, data: VidDataset) -> None:
    write_json(path, vid_to_cocovid(data))


class CocoVidDataset(VideoBoxesBase):
    """The videos of a CocoVID file, images under ``image_root`` (the ``Data/VID`` folder). Same interface as
    ``VidDataset``: ``len``, ``num_frames``, ``image``, ``image_path``, ``targets``, ``classes``, ``videos``."""

    def __init__(self, path: str | os.PathLike, image_root: str | os.PathLike) -> None:
        path, self.image_root = Path(path), Path(image_root)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise FeatflowError(f"{path}: not a readable CocoVID JSON file ({err})") from None
        missing = [k for k in ("categories", "videos", "images", "annotations") if k not in doc]
        if missing:
            raise FeatflowError(f"{path}: not a CocoVID file, it lacks {missing}")
        cats = sorted(doc["categories"], key=lambda c: c["id"])
        if [c["id"] for c in cats] != list(range(1, len(cats) + 1)):
            raise FeatflowError(f"{path}: category ids must run 1..{len(cats)}")
        self.classes = tuple((c.get("encode_name", c["name"]), c["name"]) for c in cats)
        self.class_index = {wnid: i for i, (wnid, _) in enumerate(self.classes, 1)}
        frames: dict[int, list[dict]] = {v["id"]: [] for v in doc["videos"]}
        for image in doc["images"]:
            frames[image["video_id"]].append(image)
        self._images: list[list[dict]] = []
        self.videos: list[VidVideo] = []
        for v in doc["videos"]:
            ordered = sorted(frames[v["id"]], key=lambda im: im["frame_id"])
            self._images.append(ordered)
            self.videos.append(VidVideo(v["name"].split("/", 1)[-1],
                                        tuple(Path(im["file_name"]).stem for im in ordered),
                                        tuple(im["id"] for im in ordered)))
        self._boxes: dict[int, list[dict]] = {}
        for ann in doc["annotations"]:
            self._boxes.setdefault(ann["image_id"], []).append(ann)

    def image_path(self, v: int, t: int) -> Path:
        return self.image_root / self._images[v][t]["file_name"]

    def targets(self, v: int, t: int) -> GroundTruth:
        anns = self._boxes.get(self._images[v][t]["id"], [])
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], np.float32).reshape(-1, 4)
        return GroundTruth(boxes, np.array([a["category_id"] for a in anns], np.int64),
                            np.array([a["instance_id"] for a in anns], np.int64))
