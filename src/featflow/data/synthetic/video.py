"""``SyntheticVideo``: render any frame of a "flying shapes" video with its exact ground truth.

A video is fixed by (config, seed, split, index). ``render(t)`` composites the world seen by the
camera, the objects back to front (each with its own motion blur), then the lens and sensor
degradations; the labels come from the sharp geometry. ``flow(s, t)`` maps each pixel of frame s
through the motion of the layer it shows (background or object) to frame t; a pixel is valid when
it lands inside frame t on the same layer (not occluded, not out of the frame).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from featflow.data.synthetic.degrade import finish_frame, line_kernel, motion_blur
from featflow.data.synthetic.scene import Scene, SynthConfig, Track, compose, invert, sample_scene
from featflow.structures import GroundTruth

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
_SCENE_STREAM, _FRAME_STREAM, _APPEARANCE_STREAM = 1, 2, 3


@dataclass(frozen=True)
class FrameAnnotation:
    """Ground truth of one frame."""

    semantic: np.ndarray  # (H, W) uint8: 0 = background, k = class k
    instance: np.ndarray  # (H, W) int32: 0 = background, track_id + 1 = that object
    boxes: np.ndarray  # (K, 4) float32 (x0, y0, x1, y1): x0 = first column, x1 = last column + 1
    labels: np.ndarray  # (K,) int64 class of each box (1..8)
    track_ids: np.ndarray  # (K,) int64
    visible: np.ndarray  # (K,) float32 visible part of the object's whole area (others and the frame edge hide it)
    # how each box's appearance is deteriorated in this frame (for the benchmark's statistics; None for
    # annotations made elsewhere)
    deterioration: dict[str, np.ndarray] | None = None  # name -> (K,) float32, see DETERIORATIONS

    @property
    def vid_boxes(self) -> np.ndarray:
        """The boxes in ImageNet VID's inclusive-pixel convention (x1, y1 = last column, row): (K, 4) float32."""
        boxes = self.boxes.astype(np.float32).copy()
        boxes[:, 2:] -= 1
        return boxes

    @property
    def ground_truth(self) -> GroundTruth:
        """The frame's boxes as every data set gives them (``featflow.structures``: VID's inclusive pixels)."""
        return GroundTruth(self.vid_boxes, self.labels, self.track_ids)


#: Per-box deterioration measures of ``FrameAnnotation.deterioration``:
#: - smear: length in pixels of the object's motion during the exposure (its motion blur);
#: - defocus: blur sigma in pixels on the object (the frame's defocus and the object's own, combined);
#: - foreshortening: cos of the out-of-plane turn (1 = facing the camera);
#: - hidden: share of the object not visible (other objects, the frame edge).
DETERIORATIONS: tuple[str, ...] = ("smear", "defocus", "foreshortening", "hidden")


def _shifted(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    out = matrix.copy()
    out[0, 2] -= x0
    out[1, 2] -= y0
    return out


def _apply(matrix: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2], matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2])


class SyntheticVideo:
    """One deterministic synthetic video; frames are rendered on demand in any order."""

    def __init__(self, config: SynthConfig | None = None, seed: int = 0, index: int = 0, split: str = "train",
                 cache_size: int = 4) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if seed < 0 or index < 0:
            raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
        self.config = config or SynthConfig()
        self.seed, self.index, self.split = seed, index, split
        # distinct non-zero stream tags: numpy ignores trailing zeros of a seed list
        self._key = [seed, SPLITS[split], index]
        self.scene: Scene = sample_scene(self.config, np.random.default_rng(self._key + [_SCENE_STREAM]),
                                         np.random.default_rng(self._key + [_APPEARANCE_STREAM]))
        self._cache: OrderedDict[int, tuple[np.ndarray, FrameAnnotation]] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._tracks = {tr.track_id: tr for tr in self.scene.tracks}
        self._labels = np.zeros(len(self._tracks) + 1, np.uint8)  # instance value -> class
        for tr in self.scene.tracks:
            self._labels[tr.track_id + 1] = tr.label

    def __len__(self) -> int:
        return self.config.num_frames

    @property
    def tracks(self) -> tuple[Track, ...]:
        return self.scene.tracks

    def _check(self, t: int) -> int:
        if not 0 <= t < len(self):
            raise IndexError(f"frame {t} is outside this {len(self)}-frame video")
        return int(t)

    def render(self, t: int) -> tuple[np.ndarray, FrameAnnotation]:
        """Frame ``t`` as (H, W, 3) uint8 RGB, with its annotation."""
        t = self._check(t)
        if t in self._cache:
            self._cache.move_to_end(t)
            return self._cache[t]
        result = self._render(t)
        self._cache[t] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    def frame(self, t: int) -> np.ndarray:
        return self.render(t)[0]

    def annotation(self, t: int) -> FrameAnnotation:
        return self.render(t)[1]

    def _render(self, t: int) -> tuple[np.ndarray, FrameAnnotation]:
        cfg, scene = self.config, self.scene
        h, w = cfg.height, cfg.width
        exposure = scene.schedule.exposure
        camera = scene.camera.matrix(t)
        background = cv2.warpAffine(scene.background, camera, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT_101)
        if exposure > 0:  # the camera's motion during the exposure, at the image centre
            center = scene.camera.image_center
            world = _apply(invert(camera), *center)
            before = np.array(_apply(scene.camera.matrix(t - exposure / 2), *world))
            after = np.array(_apply(scene.camera.matrix(t + exposure / 2), *world))
            background = motion_blur(background, *(after - before))
        frame = background.astype(np.float32)  # (H, W, 3)
        instance = np.zeros((h, w), np.int32)
        drawn: list[tuple[Track, float, tuple[int, int, int, int], tuple[float, float]]] = []
        for track in scene.tracks:  # far to near
            matrix = track.matrix(t)
            smear = track.position(t + exposure / 2) - track.position(t - exposure / 2) if exposure > 0 else np.zeros(2)
            sigma = track.appearance.defocus_sigma(t)
            side = track.sprite.size - 1
            xs, ys = _apply(matrix, np.array([0, side, 0, side]), np.array([0, 0, side, side]))
            pad = int(np.ceil(np.abs(smear).max() / 2 + 3 * sigma)) + 2
            x0, y0 = max(int(np.floor(xs.min())) - pad, 0), max(int(np.floor(ys.min())) - pad, 0)
            x1, y1 = min(int(np.ceil(xs.max())) + pad + 1, w), min(int(np.ceil(ys.max())) + pad + 1, h)
            if x0 >= x1 or y0 >= y1:
                continue
            warped = cv2.warpAffine(track.sprite.rgba, _shifted(matrix, x0, y0), (x1 - x0, y1 - y0),
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            rgb = warped[..., :3].astype(np.float32)  # (h, w, 3)
            alpha = warped[..., 3].astype(np.float32)  # (h, w)
            alpha *= 1.0 / 255.0
            region = frame[y0:y1, x0:x1]
            instance[y0:y1, x0:x1][warped[..., 3] >= 128] = track.track_id + 1
            streak, defocused = line_kernel(*smear) is not None, sigma > 0.3
            if streak or defocused:  # blur the premultiplied layer: along the object's motion, then out of focus
                premultiplied = cv2.multiply(rgb, cv2.merge([alpha] * 3))
                if streak:
                    premultiplied, alpha = motion_blur(premultiplied, *smear), motion_blur(alpha, *smear)
                if defocused:
                    premultiplied = cv2.GaussianBlur(premultiplied, (0, 0), sigma)
                    alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
                region[...] = cv2.add(cv2.multiply(region, cv2.merge([1.0 - alpha] * 3)), premultiplied)
            else:
                region[...] = cv2.blendLinear(rgb, region, alpha, 1.0 - alpha)
            drawn.append((track, abs(np.linalg.det(matrix[:, :2])) * track.sprite.area, (x0, y0, x1, y1),
                          (float(np.hypot(*smear)), sigma)))
        annotation = self._annotate(instance, drawn, t)
        rng = np.random.default_rng(self._key + [_FRAME_STREAM, t])
        return finish_frame(frame, scene.schedule, t, rng), annotation

    def _annotate(self, instance: np.ndarray,
                  drawn: list[tuple[Track, float, tuple[int, int, int, int], tuple[float, float]]],
                  t: int) -> FrameAnnotation:
        boxes, labels, ids, visible, measures = [], [], [], [], []
        frame_sigma = self.scene.schedule.defocus_sigma(t)
        for track, full_area, (x0, y0, x1, y1), (smear, sigma) in drawn:
            mask = instance[y0:y1, x0:x1] == track.track_id + 1  # an object's pixels lie inside its drawing region
            count = int(np.count_nonzero(mask))
            if count == 0:
                continue
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            boxes.append((x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1))
            labels.append(track.label)
            ids.append(track.track_id)
            visible.append(min(1.0, count / max(full_area, 1.0)))
            measures.append((smear, float(np.hypot(sigma, frame_sigma)), track.appearance.foreshortening(t),
                             1.0 - visible[-1]))
        table = np.asarray(measures, np.float32).reshape(-1, len(DETERIORATIONS))
        return FrameAnnotation(
            semantic=self._labels[instance],
            instance=instance,
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64),
            track_ids=np.asarray(ids, np.int64),
            visible=np.asarray(visible, np.float32),
            deterioration={name: table[:, i] for i, name in enumerate(DETERIORATIONS)},
        )

    def layer_motion(self, layer: int, source: int, target: int) -> np.ndarray:
        """The affine map taking frame ``source`` to frame ``target`` for a layer (0 = background,
        k = track k - 1)."""
        if layer == 0:
            return compose(self.scene.camera.matrix(target), invert(self.scene.camera.matrix(source)))
        track = self._tracks[layer - 1]
        return compose(track.matrix(target), invert(track.matrix(source)))

    def flow(self, source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact flow from frame ``source`` to frame ``target``.

        Returns (flow, valid): flow (H, W, 2) float32, the displacement (dx, dy) of each pixel of
        ``source`` to where the same scene point is in ``target``; valid (H, W) bool, False where that
        point is hidden in ``target`` (occluded) or falls outside it.
        """
        src, dst = self.annotation(source).instance, self.annotation(target).instance
        h, w = src.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        mx, my = _apply(self.layer_motion(0, source, target), xs, ys)
        for track_id, (x0, y0, x1, y1) in zip(self.annotation(source).track_ids, self.annotation(source).boxes):
            x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
            layer = int(track_id) + 1
            mask = src[y0:y1, x0:x1] == layer
            ox, oy = _apply(self.layer_motion(layer, source, target), xs[y0:y1, x0:x1], ys[y0:y1, x0:x1])
            mx[y0:y1, x0:x1] = np.where(mask, ox, mx[y0:y1, x0:x1])
            my[y0:y1, x0:x1] = np.where(mask, oy, my[y0:y1, x0:x1])
        flow = np.stack([mx - xs, my - ys], axis=-1).astype(np.float32)
        qx, qy = np.rint(mx).astype(np.int64), np.rint(my).astype(np.int64)
        inside = (qx >= 0) & (qx < w) & (qy >= 0) & (qy < h)
        valid = inside & (dst[np.clip(qy, 0, h - 1), np.clip(qx, 0, w - 1)] == src)
        return flow, valid
