"""FlyingChairs-style flow pairs built from real photographs, with exact flow.

FlowNet (Dosovitskiy et al. 2015) pre-trains on FlyingChairs: real Flickr photographs as background textures,
rendered chairs in front of them, and a random affine motion for the background and for each chair between the two
frames, so the flow is known exactly while the images carry real-photo statistics. This module builds the same kind of
pair from the photographs scikit-image ships (``skimage.data``): public domain, CC0, or without known copyright
restrictions (``CATALOG`` quotes each one's licence line from its docstring, links reduced to their text). Chairs become
texture cut-outs of random ellipses and polygons. The held-out photos (role ``"test"``) are never used for training:
they only build evaluation pairs (``featflow.evaluation.texture_pairs``).

Each layer of a scene is a texture-space image and mask with two affine maps, ``A_cur`` and ``A_key`` (texture ->
frame coordinates). Both frames are rendered by inverse mapping (``cv2.warpAffine``, bilinear for the colour, nearest
for the mask), so the flow of the current-frame pixel ``p`` of layer ``k`` is exactly ``A_key A_cur^-1 p - p``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from featflow.data.flow_pairs import flow_sample
from featflow.errors import FeatflowError

#: the two splits: "train" photos build training pairs, "test" (held-out) photos only evaluation pairs
SPLITS = ("train", "test")
_SPLIT_SEEDS = {"train": 1, "test": 2}  # mixed into each sample's seed, so the splits never share a scene
_PRIME = 104729

# motion ranges (FlyingChairs-like): translation radius, rotation (degrees) and scale between the two frames
BACKGROUND_ROTATION, BACKGROUND_SCALE = 5.0, (0.93, 1.07)  # translation up to max_motion / 2
LAYER_ROTATION, LAYER_SCALE = 15.0, (0.9, 1.1)  # translation up to max_motion
LAYER_SIZE = (1 / 16, 1 / 3)  # each side of a cut-out, as a fraction of the frame's shorter side
_BACKGROUND_MARGIN = 1.4  # the background texture is this much larger than the frame


@dataclass(frozen=True)
class Photo:
    """One photograph of ``skimage.data``: ``loader`` is the function's name, ``licence`` its docstring's words."""

    name: str
    loader: str
    licence: str
    role: str  # "train" or "test" (held out: evaluation only)
    trim: float = 0.0  # the fraction cut from each side (the retina's black surround)


CATALOG: tuple[Photo, ...] = (
    Photo("astronaut", "astronaut", "No known copyright restrictions, released into the public domain.", "train"),
    Photo("coffee", "coffee", "No copyright restrictions. CC0 by the photographer (Rachel Michetti).", "train"),
    Photo("rocket", "rocket", "The image was captured by SpaceX and released in the public domain.", "train"),
    Photo("hubble_deep_field", "hubble_deep_field",
          "The image was captured by NASA and may be freely used in the public domain.", "train"),
    Photo("immunohistochemistry", "immunohistochemistry", "No known copyright restrictions.", "train"),
    Photo("brick", "brick", "The original image was downloaded from CC0Textures and licensed under the Creative "
          "Commons CC0 License.", "train"),
    Photo("grass", "grass", "The original image was downloaded from DeviantArt and licensed under the Creative "
          "Commons CC0 License.", "train"),
    Photo("gravel", "gravel", "The original image was downloaded from CC0Textures and licensed under the Creative "
          "Commons CC0 License.", "train"),
    Photo("retina", "retina", "This file is made available under the Creative Commons CC0 1.0 Universal Public Domain "
          "Dedication.", "train", trim=0.15),
    Photo("chelsea", "chelsea", "No copyright restrictions. CC0 by the photographer (Stefan van der Walt).", "test"),
    Photo("camera", "camera", "No copyright restrictions. CC0 by the photographer (Lav Varshney).", "test"),
    Photo("clock", "clock", "Released into the public domain by the photographer (Stefan van der Walt).", "test"),
)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise FeatflowError(f"unknown real-texture split {split!r}; choose one of {', '.join(SPLITS)}")


def _skimage_data():
    """The ``skimage.data`` module, or a one-line FeatflowError saying how to install it."""
    try:
        import skimage.data
    except ImportError:
        raise FeatflowError("real textures need scikit-image: pip install 'featflow[textures]'") from None
    return skimage.data


@functools.lru_cache(maxsize=None)
def _load(split: str) -> tuple[np.ndarray, ...]:
    data = _skimage_data()
    images = []
    for photo in CATALOG:
        if photo.role != split:
            continue
        image = np.asarray(getattr(data, photo.loader)())
        if image.ndim == 2:  # grayscale: the same value in R, G and B
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = image[:, :, :3]  # (H, W, 3)
        if photo.trim:
            dy, dx = round(image.shape[0] * photo.trim), round(image.shape[1] * photo.trim)
            image = image[dy:image.shape[0] - dy, dx:image.shape[1] - dx]
        image = np.ascontiguousarray(image, dtype=np.uint8)
        image.setflags(write=False)
        images.append(image)
    return tuple(images)


def photos(split: str) -> list[np.ndarray]:
    """The (H, W, 3) uint8 RGB photos of ``split`` ("train" or "test", the held-out ones); loaded once, read-only."""
    _check_split(split)
    return list(_load(split))


def _crop(photo: np.ndarray, rng: np.random.Generator, height: int, width: int, zoom: tuple[float, float]
          ) -> np.ndarray:
    """A random (height, width, 3) crop of ``photo`` resampled to that size, ``zoom`` photo pixels per output pixel
    (less where the photo is too small)."""
    fit = min(photo.shape[0] / height, photo.shape[1] / width)
    scale = min(fit, rng.uniform(*zoom))
    ch, cw = max(1, min(photo.shape[0], round(height * scale))), max(1, min(photo.shape[1], round(width * scale)))
    y, x = int(rng.integers(0, photo.shape[0] - ch + 1)), int(rng.integers(0, photo.shape[1] - cw + 1))
    crop = photo[y:y + ch, x:x + cw]
    interpolation = cv2.INTER_AREA if ch > height else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interpolation)


def _shape_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (height, width) uint8 mask: a random ellipse or a star-shaped polygon of 3..8 vertices, filling the box."""
    mask = np.zeros((height, width), np.uint8)
    cx, cy, rx, ry = (width - 1) / 2, (height - 1) / 2, max(1.0, width / 2 - 1), max(1.0, height / 2 - 1)
    if rng.random() < 0.4:
        cv2.ellipse(mask, (round(cx), round(cy)), (round(rx), round(ry)), 0, 0, 360, 1, thickness=-1)
    else:
        n = int(rng.integers(3, 9))
        angles = 2 * np.pi * (np.arange(n) + rng.uniform(-0.35, 0.35, n)) / n + rng.uniform(0, 2 * np.pi)
        radii = rng.uniform(0.55, 1.0, n)
        points = np.stack([cx + rx * radii * np.cos(angles), cy + ry * radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    if not mask.any():
        mask[round(cy), round(cx)] = 1
    return mask


def _similarity(center: np.ndarray, angle: float, scale: float, shift: np.ndarray) -> np.ndarray:
    """(3, 3): rotate by ``angle`` radians and scale about ``center``, then translate by ``shift``."""
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    linear = np.array([[c, -s], [s, c]])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = center + shift - linear @ center
    return matrix


def _placement(texture_size: tuple[int, int], center: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) texture -> frame: the texture's centre to ``center``, rotated by ``angle`` radians."""
    h, w = texture_size
    to_origin = np.eye(3)
    to_origin[:2, 2] = [-(w - 1) / 2, -(h - 1) / 2]
    return _similarity(np.zeros(2), angle, 1.0, center) @ to_origin


def _disc(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A point uniform in the disc of ``radius`` about 0: (2,) x, y."""
    r, a = radius * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
    return np.array([r * math.cos(a), r * math.sin(a)])


@dataclass(frozen=True)
class _Layer:
    texture: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray | None  # (h, w) uint8, None: covers everything (the background)
    a_cur: np.ndarray  # (3, 3) texture -> current frame
    a_key: np.ndarray  # (3, 3) texture -> key frame


def _footprint(affine: np.ndarray, texture_size: tuple[int, int], height: int, width: int
               ) -> tuple[int, int, int, int] | None:
    """The frame window (x0, y0, x1, y1) a (h, w) texture box covers under the (2, 3) ``affine``, None if none."""
    h, w = texture_size
    corners = np.array([[-1, -1, 1], [w, -1, 1], [-1, h, 1], [w, h, 1]], np.float64) @ affine.T  # (4, 2)
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (int(x0), int(y0), int(x1), int(y1)) if x0 < x1 and y0 < y1 else None


def _render(layers: list[_Layer], which: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame (height, width, 3) float32 and the index of its topmost layer at each pixel (height, width) uint8."""
    image = np.empty((height, width, 3), np.float32)
    label = np.zeros((height, width), np.uint8)
    for k, layer in enumerate(layers):
        affine = (layer.a_cur if which == "cur" else layer.a_key)[:2]
        if layer.mask is None:  # the background: everywhere (reflected past the texture's edge, the same in both)
            image[:] = cv2.warpAffine(layer.texture, affine, (width, height), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT_101)
            continue
        window = _footprint(affine, layer.mask.shape, height, width)
        if window is None:
            continue
        x0, y0, x1, y1 = window  # warp only the window the cut-out can cover: the same map, shifted
        shifted = affine - np.array([[0, 0, x0], [0, 0, y0]], np.float64)
        colour = cv2.warpAffine(layer.texture, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101)
        covered = cv2.warpAffine(layer.mask, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        image[y0:y1, x0:x1][covered] = colour[covered]
        label[y0:y1, x0:x1][covered] = k
    return image, label


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A brightness gain of 0.9..1.1 and gaussian noise of sigma 0..2 gray levels; (H, W, 3) float32."""
    gain, sigma = rng.uniform(0.9, 1.1), rng.uniform(0.0, 2.0)
    return image * np.float32(gain) + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class RealTexturePairs(Dataset):
    """FlyingChairs-style (current, key, flow, valid) pairs from the photos of ``split``, in the format of
    ``featflow.data.flow_pairs``: ``current``, ``key`` (3, H, W) float32 RGB in [0, 255] (whole gray levels),
    ``flow`` (2, H, W) float32 current -> key in pixels (x, y), ``valid`` (H, W) bool.

    A scene is a photo crop as background and ``layers`` (inclusive range) photo cut-outs in front of it, back to
    front, each with its own affine motion; ``max_motion`` bounds the translation of a cut-out (the background's is
    half of it). Sample ``i`` is a pure function of (size, seed, split, i) and the other arguments; ``photometric``
    adds a brightness change and noise per frame, drawn after the geometry, so turning it off keeps flow and valid.
    """

    def __init__(self, length: int, size: tuple[int, int] = (256, 512), seed: int = 0, split: str = "train",
                 layers: tuple[int, int] = (2, 6), max_motion: float = 24.0, photometric: bool = True) -> None:
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if len(size) != 2 or min(size) < 16:
            raise ValueError(f"size must be (height, width), each at least 16, got {size}")
        if not 0 <= layers[0] <= layers[1]:
            raise ValueError(f"layers must be (low, high) with 0 <= low <= high, got {layers}")
        if max_motion < 0:
            raise ValueError(f"max_motion must not be negative, got {max_motion}")
        _check_split(split)
        photos(split)  # fail now (no scikit-image), not in a worker
        self.length, self.size, self.seed, self.split = length, (int(size[0]), int(size[1])), seed, split
        self.layers = (int(layers[0]), int(layers[1]))
        self.max_motion, self.photometric = float(max_motion), photometric

    def __len__(self) -> int:
        return self.length

    def _scene(self, rng: np.random.Generator) -> list[_Layer]:
        height, width = self.size
        images = photos(self.split)  # cached: not kept on self, so pickling the dataset for workers stays cheap
        frame_center = np.array([(width - 1) / 2, (height - 1) / 2])
        first = int(rng.integers(len(images)))
        bh, bw = math.ceil(height * _BACKGROUND_MARGIN), math.ceil(width * _BACKGROUND_MARGIN)
        a_cur = _placement((bh, bw), frame_center, 0.0)
        motion = _similarity(frame_center, math.radians(rng.uniform(-BACKGROUND_ROTATION, BACKGROUND_ROTATION)),
                             rng.uniform(*BACKGROUND_SCALE), _disc(rng, self.max_motion / 2))
        scene = [_Layer(_crop(images[first], rng, bh, bw, (0.5, 2.0)), None, a_cur, motion @ a_cur)]
        others = [i for i in range(len(images)) if i != first] or [first]
        short = min(height, width)
        for _ in range(int(rng.integers(self.layers[0], self.layers[1] + 1))):
            photo = images[others[int(rng.integers(len(others)))]]
            side = rng.uniform(*LAYER_SIZE) * short
            aspect = math.exp(rng.uniform(-0.4, 0.4))
            lo, hi = LAYER_SIZE[0] * short, LAYER_SIZE[1] * short
            th = max(3, round(min(hi, max(lo, side * math.sqrt(aspect)))))
            tw = max(3, round(min(hi, max(lo, side / math.sqrt(aspect)))))
            texture, mask = _crop(photo, rng, th, tw, (0.5, 2.0)), _shape_mask(rng, th, tw)
            center = rng.uniform([0, 0], [width - 1, height - 1])
            a_cur = _placement((th, tw), center, rng.uniform(-np.pi, np.pi))
            motion = _similarity(center, math.radians(rng.uniform(-LAYER_ROTATION, LAYER_ROTATION)),
                                 rng.uniform(*LAYER_SCALE), _disc(rng, self.max_motion))
            scene.append(_Layer(texture, mask, a_cur, motion @ a_cur))
        return scene

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sample ``index`` as numpy: current, key (H, W, 3) uint8 RGB, flow (H, W, 2) float32, valid (H, W) bool."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        height, width = self.size
        rng = np.random.default_rng([self.seed, index, _PRIME, _SPLIT_SEEDS[self.split]])
        scene = self._scene(rng)
        current, label_cur = _render(scene, "cur", height, width)
        key, label_key = _render(scene, "key", height, width)
        # current -> key of each layer: A_key A_cur^-1, (L, 2, 3); each pixel takes its topmost layer's
        to_key = np.stack([(layer.a_key @ np.linalg.inv(layer.a_cur))[:2] for layer in scene])
        m = to_key[label_cur]  # (H, W, 2, 3)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        kx = m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]
        ky = m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]
        flow = np.stack([kx - xs, ky - ys], axis=-1).astype(np.float32)  # (H, W, 2)
        inside = (kx >= 0) & (kx <= width - 1) & (ky >= 0) & (ky <= height - 1)
        ix = np.clip(np.rint(kx), 0, width - 1).astype(np.intp)
        iy = np.clip(np.rint(ky), 0, height - 1).astype(np.intp)
        valid = inside & (label_key[iy, ix] == label_cur)  # (H, W): still the topmost layer there in the key frame
        if self.photometric:
            current, key = _photometric(current, rng), _photometric(key, rng)
        return _to_uint8(current), _to_uint8(key), flow, valid

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return flow_sample(*self.pair(index))
