"""FlyingChairs-style pairs from scikit-image's photographs: licences, determinism, exact flow, occlusions."""

import inspect
import math
import re
import sys

import cv2
import numpy as np
import pytest
import torch

from featflow.data import real_textures
from featflow.data.flow_pairs import flow_sample
from featflow.data.real_textures import CATALOG, RealTexturePairs, photos
from featflow.errors import FeatflowError
from featflow.evaluation.flow_metrics import FlowPair, evaluate_flow
from featflow.evaluation.texture_pairs import held_out_texture_pairs
from featflow.modeling.shallow_flow import DISFlow, zero_flow

skimage_data = pytest.importorskip("skimage.data")

SIZE = (128, 256)


def _inside(kx: np.ndarray, ky: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Key positions at least ``margin`` px inside the frame of SIZE (a negative margin: up to that far outside)."""
    h, w = SIZE
    return (kx >= margin) & (kx <= w - 1 - margin) & (ky >= margin) & (ky <= h - 1 - margin)


def _plain_docstring(function) -> str:
    """The docstring with reStructuredText links reduced to their text and whitespace to single spaces."""
    text = re.sub(r"`([^`<]*?)\s*<[^>]*>`_*", r"\1", inspect.getdoc(function))
    return " ".join(text.split())


def test_the_catalog_quotes_each_photos_licence_and_keeps_the_held_out_photos_apart():
    train = {p.loader for p in CATALOG if p.role == "train"}
    test = {p.loader for p in CATALOG if p.role == "test"}
    assert train == {"astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "brick", "grass",
                     "gravel", "retina"}
    assert test == {"chelsea", "camera", "clock"} and not train & test
    assert {p.role for p in CATALOG} == {"train", "test"} and len({p.name for p in CATALOG}) == len(CATALOG)
    for photo in CATALOG:
        assert photo.licence in _plain_docstring(getattr(skimage_data, photo.loader)), photo.name
        assert re.search(r"public domain|CC0|no known copyright", photo.licence, re.IGNORECASE), photo.name


def test_photos_are_rgb_uint8_cached_and_differ_between_splits():
    for split, count in (("train", 9), ("test", 3)):
        images = photos(split)
        assert len(images) == count and images is not photos(split)  # a fresh list ...
        assert all(a is b for a, b in zip(images, photos(split)))  # ... of the cached arrays
        for image in images:
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and min(image.shape[:2]) >= 256
            assert not image.flags.writeable
    shapes = {image.shape for image in photos("train")}
    assert not any(image.shape in shapes and any(np.array_equal(image, t) for t in photos("train"))
                   for image in photos("test"))
    with pytest.raises(FeatflowError, match="unknown real-texture split 'val'; choose one of train, test"):
        photos("val")
    with pytest.raises(FeatflowError, match="choose one of train, test"):
        RealTexturePairs(4, split="val")


def test_a_missing_scikit_image_is_a_one_line_featflow_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(FeatflowError) as caught:
        real_textures._skimage_data()
    assert str(caught.value) == "real textures need scikit-image: pip install 'featflow[textures]'"


def test_samples_have_the_flow_pairs_format_and_are_pure_functions_of_the_index():
    dataset = RealTexturePairs(6, size=SIZE, seed=3)
    sample = dataset[2]
    h, w = SIZE
    reference = flow_sample(np.zeros((h, w, 3), np.uint8), np.zeros((h, w, 3), np.uint8),
                        np.zeros((h, w, 2), np.float32), np.ones((h, w), bool))
    assert sample.keys() == reference.keys()
    for name, tensor in sample.items():
        assert tensor.shape == reference[name].shape and tensor.dtype == reference[name].dtype, name
    assert 0 <= sample["current"].min() and sample["current"].max() <= 255
    again = RealTexturePairs(6, size=SIZE, seed=3)[2]  # a new dataset: nothing carried between samples
    assert all(torch.equal(sample[name], again[name]) for name in sample)
    other = dataset[3]
    assert not torch.equal(sample["current"], other["current"]) and not torch.equal(sample["flow"], other["flow"])
    assert not torch.equal(sample["current"], RealTexturePairs(6, size=SIZE, seed=4)[2]["current"])
    assert not torch.equal(sample["current"], RealTexturePairs(6, size=SIZE, seed=3, split="test")[2]["current"])
    with pytest.raises(IndexError):
        dataset[6]


def test_the_flow_is_exact_sampling_the_key_frame_at_p_plus_flow_gives_the_current_frame():
    dataset = RealTexturePairs(6, size=SIZE, seed=1, photometric=False)
    h, w = SIZE
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(len(dataset)):
        current, key, flow, valid = dataset.pair(i)
        warped = cv2.remap(key, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR)
        error = np.abs(warped.astype(np.float64) - current).mean(axis=2)[valid].mean()
        still = np.abs(key.astype(np.float64) - current).mean(axis=2)[valid].mean()
        assert error < 0.25 * still and error < 6, (i, error, still)
    # the photometric changes are drawn after the geometry: the same scene, the same flow, different pixels
    noisy = RealTexturePairs(6, size=SIZE, seed=1).pair(5)
    assert np.array_equal(noisy[2], flow) and np.array_equal(noisy[3], valid)
    assert not np.array_equal(noisy[0], current)
    assert np.abs(noisy[0].astype(np.float64) - current).mean() < 0.12 * 255


def test_valid_masks_out_occlusions_and_the_flow_stays_within_the_motion_bound():
    h, w = SIZE
    max_motion = 16.0
    dataset = RealTexturePairs(8, size=SIZE, seed=2, layers=(3, 6), max_motion=max_motion, photometric=False)

    def spread(scale: tuple[float, float], degrees: float) -> float:  # the largest |sR - I| of the motions allowed
        return max(math.sqrt(s * s - 2 * s * math.cos(math.radians(degrees)) + 1) for s in scale)

    # a cut-out moves about its centre, at most half its diagonal away; the background about the frame's centre
    cutout = max_motion + spread((0.9, 1.1), 15) * math.hypot(min(SIZE) / 3, min(SIZE) / 3) / 2
    background = max_motion / 2 + spread((0.93, 1.07), 5) * math.hypot(h - 1, w - 1) / 2
    bound = max(cutout, background) + 1e-3
    ys, xs = np.mgrid[0:h, 0:w]
    largest, occluded = 0.0, 0
    for i in range(len(dataset)):
        _, _, flow, valid = dataset.pair(i)
        magnitude = np.linalg.norm(flow, axis=2)
        assert magnitude.max() <= bound, (i, magnitude.max(), bound)
        largest = max(largest, float(magnitude.max()))
        kx, ky = xs + flow[..., 0], ys + flow[..., 1]
        assert not valid[~_inside(kx, ky, -1e-3)].any()  # leaving the frame is invalid
        occluded += int((_inside(kx, ky, 1e-3) & ~valid).sum())  # in the frame, hidden by a layer in the key frame
        assert 0.5 < valid.mean() < 1
    assert occluded > 0 and largest > max_motion / 2


def test_the_background_alone_moves_by_one_similarity():
    dataset = RealTexturePairs(3, size=SIZE, seed=5, layers=(0, 0), photometric=False)
    h, w = SIZE
    ys, xs = np.mgrid[0:h, 0:w]
    design = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)], axis=1)
    for i in range(len(dataset)):
        _, _, flow, valid = dataset.pair(i)
        target = np.stack([xs + flow[..., 0], ys + flow[..., 1]], axis=-1).reshape(-1, 2)
        affine, *_ = np.linalg.lstsq(design, target, rcond=None)  # (3, 2)
        assert np.abs(design @ affine - target).max() < 1e-3
        a, b, c, d = affine[0, 0], affine[1, 0], affine[0, 1], affine[1, 1]
        assert abs(a - d) < 1e-6 and abs(b + c) < 1e-6  # a rotation and a scale, no shear
        assert 0.93 - 1e-6 <= math.hypot(a, c) <= 1.07 + 1e-6
        kx, ky = target[:, 0].reshape(h, w), target[:, 1].reshape(h, w)
        # nothing occludes it: only what leaves the frame is invalid (give or take float rounding at the edge)
        assert valid[_inside(kx, ky, 1e-3)].all() and not valid[~_inside(kx, ky, -1e-3)].any()
        assert valid.mean() > 0.5


def test_held_out_texture_pairs_are_flow_pairs_dis_beats_zero_flow_on():
    pairs = held_out_texture_pairs(4, SIZE, seed=0)
    assert len(pairs) == 4 and all(isinstance(pair, FlowPair) for pair in pairs)
    for pair in pairs:
        assert pair.current.shape == pair.key.shape == (*SIZE, 3) and pair.current.dtype == np.uint8
        assert pair.flow.shape == (*SIZE, 2) and pair.flow.dtype == np.float32
        assert pair.valid.shape == SIZE and pair.valid.dtype == bool
    test_sample = RealTexturePairs(4, size=SIZE, seed=0, split="test")[1]
    assert np.array_equal(pairs[1].current, test_sample["current"].permute(1, 2, 0).numpy().astype(np.uint8))
    zero = evaluate_flow(zero_flow, pairs)
    dis = evaluate_flow(DISFlow("medium"), pairs)
    assert dis.epe < zero.epe and dis.epe_valid < zero.epe_valid and zero.epe > 1
