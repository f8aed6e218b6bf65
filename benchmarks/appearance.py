"""Detection accuracy by appearance: how well a detector finds objects in the frames where their appearance
is deteriorated, the case FGFA exists for (the seed's "deteriorated appearance in videos").

The held-out videos are featflow's synthetic ones (``featflow synth --format vid``): every file is a pure
function of the generator settings in ``featflow_synth.json``, so each video is rebuilt here and its boxes'
per-frame deterioration read (``FrameAnnotation.deterioration``: smear, defocus, foreshortening, hidden),
each box matched to the exported ground truth by frame and track id. The levels are those of
``reports/synth.md`` (``benchmarks.synth_report.DETERIORATION_LEVELS``).

Groups of boxes, each scored as FGFA scores a motion category (``featflow.evaluation.vid_map``):
- ``clear``: no deterioration reaches its hit level;
- ``mild``: some does, none reaches its strong level;
- ``strong, better nearby``: strongly deteriorated, and the same object is seen without strong
  deterioration within +-9 frames (what aggregating neighbours can draw on);
- ``strong throughout``: strongly deteriorated in every frame of that window.
Per deterioration type alone (``by_type``): none / hit / strong of that type, whatever the others do.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from benchmarks.cells import difference, percent
from benchmarks.synth_report import DETERIORATION_LEVELS, NEIGHBOUR_WINDOW, passes_level
from featflow.data.synthetic import SynthConfig, SyntheticVideo
from featflow.data.vid import VidDataset
from featflow.errors import FeatflowError
from featflow.evaluation.bootstrap import vid_map_differences
from featflow.evaluation.vid_map import ap_per_class, mean_ap, per_video_outcomes, rank_outcomes
from featflow.structures import VideoDetections, VideoGroundTruth

GROUPS = ("clear", "mild", "strong, better nearby", "strong throughout")
TYPE_GROUPS = ("none", "hit", "strong")


def _video_index(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    if match is None:
        raise FeatflowError(f"{name}: not a video folder written by featflow synth (no trailing index)")
    return int(match.group(1))


def box_deterioration(data: VidDataset, truth: list[VideoGroundTruth]) -> list[list[dict[str, np.ndarray]]]:
    """Per video and frame, each ground-truth box's deterioration measures (name -> (m,) float), from the
    generator that wrote ``data``."""
    meta_path = data.root / "featflow_synth.json"
    if not meta_path.is_file():
        raise FeatflowError(f"{data.root} has no featflow_synth.json: appearance groups need data written by "
                            "featflow synth")
    meta = json.loads(meta_path.read_text())
    config = SynthConfig.from_dict(meta["config"])
    out = []
    for video, gt in zip(data.videos, truth):
        synthetic = SyntheticVideo(config, meta["seed"], _video_index(video.name), data.split, cache_size=1)
        frames = []
        for t, track_ids in enumerate(gt.track_ids):
            ann = synthetic.annotation(t)
            where = {int(k): i for i, k in enumerate(ann.track_ids)}
            missing = [int(k) for k in track_ids if int(k) not in where]
            if missing:
                raise FeatflowError(f"{video.name} frame {t}: tracks {missing} are not in the generator's frame; "
                                    "the data and featflow_synth.json disagree")
            rows = [where[int(k)] for k in track_ids]
            frames.append({name: np.asarray(ann.deterioration[name], np.float64)[rows]
                           for name in DETERIORATION_LEVELS})
        out.append(frames)
    return out


def appearance_groups(truth: list[VideoGroundTruth],
                      measures: list[list[dict[str, np.ndarray]]]) -> list[list[np.ndarray]]:
    """Per video and frame, each box's group of GROUPS."""
    out = []
    for gt, video in zip(truth, measures):
        hit = [np.any([passes_level(n, f[n], lv[0]) for n, lv in DETERIORATION_LEVELS.items()], 0) for f in video]
        strong = [np.any([passes_level(n, f[n], lv[1]) for n, lv in DETERIORATION_LEVELS.items()], 0) for f in video]
        frames = np.concatenate([np.full(len(k), t) for t, k in enumerate(gt.track_ids)] + [np.zeros(0, int)])
        tracks = np.concatenate(list(gt.track_ids) + [np.zeros(0, np.int64)])
        strong_all = np.concatenate(strong + [np.zeros(0, bool)])
        groups = np.where(np.concatenate(hit + [np.zeros(0, bool)]), GROUPS[1], GROUPS[0]).astype(object)
        for i in np.flatnonzero(strong_all):
            near = (tracks == tracks[i]) & (np.abs(frames - frames[i]) <= NEIGHBOUR_WINDOW)
            groups[i] = GROUPS[2] if (near & ~strong_all).any() else GROUPS[3]
        bounds = np.cumsum([0] + [len(k) for k in gt.track_ids])
        out.append([groups[a:b].astype(str) for a, b in zip(bounds[:-1], bounds[1:])])
    return out


def type_groups(measures: list[list[dict[str, np.ndarray]]], name: str) -> list[list[np.ndarray]]:
    """Per video and frame, each box's group of TYPE_GROUPS for one deterioration type alone."""
    hit_level, strong_level = DETERIORATION_LEVELS[name]
    return [[np.where(passes_level(name, f[name], strong_level), "strong",
                      np.where(passes_level(name, f[name], hit_level), "hit", "none")) for f in video]
            for video in measures]


def group_counts(groups: list[list[np.ndarray]], names: tuple[str, ...]) -> dict[str, int]:
    """How many boxes each group holds."""
    every = np.concatenate([g for video in groups for g in video] + [np.zeros(0, str)])
    return {name: int((every == name).sum()) for name in names}


def group_maps(detections: list[VideoDetections], truth: list[VideoGroundTruth], num_classes: int,
               groups: list[list[np.ndarray]], names: tuple[str, ...]) -> dict[str, float | None]:
    """mAP of each group of boxes (per video and frame, each box's name), scored as a motion category is: boxes of
    the other groups are neither found nor missed (None: a group without boxes)."""
    ranked = rank_outcomes(per_video_outcomes(detections, truth, num_classes, groups, names), num_classes)
    out = {}
    for name in ranked.categories:
        value = mean_ap(ap_per_class(ranked, name))
        out[name] = None if math.isnan(value) else value
    return out


def appearance_results(data: VidDataset, truth: list[VideoGroundTruth], detections: dict[str, list[VideoDetections]],
                       single: str, samples: int = 1000) -> dict:
    """mAP per appearance group (GROUPS) of every row in ``detections`` (name -> detections), single frame's
    mAP per type and level of deterioration, and each other row's difference from ``single`` per group with
    its paired 95% bootstrap interval over videos (``samples`` resamples; 0: none)."""
    num_classes = len(data.classes)
    measures = box_deterioration(data, truth)
    groups = appearance_groups(truth, measures)
    rows = [{"name": name, "map": group_maps(dets, truth, num_classes, groups, GROUPS)}
            for name, dets in detections.items()]
    by_type = []
    for name in DETERIORATION_LEVELS:
        split = type_groups(measures, name)
        by_type.append({"deterioration": name, "levels": list(DETERIORATION_LEVELS[name]),
                        "boxes": group_counts(split, TYPE_GROUPS),
                        "map": group_maps(detections[single], truth, num_classes, split, TYPE_GROUPS)})
    differences = []
    if samples:
        for name, dets in detections.items():
            if name == single:
                continue
            diffs = vid_map_differences(detections[single], dets, truth, num_classes, samples=samples,
                                        categories=GROUPS, groups=groups, names=GROUPS)
            differences.append({"base": single, "other": name, **{g: d.to_json() for g, d in diffs.items()}})
    boxes = group_counts(groups, GROUPS)
    return {"groups": list(GROUPS), "boxes": boxes, "rows": rows, "single": single, "by_type": by_type,
            "differences": differences, "headroom": headroom(rows[list(detections).index(single)]["map"], boxes)}


def headroom(maps: dict[str, float | None], boxes: dict[str, int]) -> dict[str, float] | None:
    """What aggregation could add at most, in the arithmetic of shares: mAP is roughly the box-weighted mean
    of the groups' mAPs (``weighted``, to compare with the real ``all``); raising the group that has a better
    view nearby to the clear group's level adds ``better_nearby`` points, and raising the mild group too adds
    ``with_mild``. An estimate, not a bound the metric guarantees."""
    total = sum(boxes.values())
    if not total or any(maps.get(g) is None for g in GROUPS):
        return None
    share = {g: boxes[g] / total for g in GROUPS}
    weighted = sum(share[g] * maps[g] for g in GROUPS)
    clear = maps[GROUPS[0]]
    nearby = share[GROUPS[2]] * max(0.0, clear - maps[GROUPS[2]])
    mild = share[GROUPS[1]] * max(0.0, clear - maps[GROUPS[1]])
    return {"weighted": weighted, "all": maps["all"], "better_nearby": nearby, "with_mild": nearby + mild}




def appearance_lines(results: dict) -> list[str]:
    """The report's section on accuracy by appearance."""
    boxes = results["boxes"]
    levels = ", ".join(f"{name} {hit:g} / {strong:g}" for name, (hit, strong) in DETERIORATION_LEVELS.items())
    lines = ["", "## Accuracy by appearance (what FGFA exists for)", "",
             "Each ground-truth box is grouped by its deterioration in its frame (read from the generator that wrote "
             "the held-out videos; hit / strong levels as in `reports/synth.md`: " + levels + "): *clear* (nothing "
             "reaches its hit level), *mild* (something does, nothing strong), *strong, better nearby* (strongly "
             f"deteriorated, and the same object is seen without strong deterioration within +-{NEIGHBOUR_WINDOW} "
             "frames: what aggregation can draw on) and *strong throughout*. Each group is scored as a motion "
             "category is (boxes of the other groups are neither found nor missed).", "",
             "| method | all | " + " | ".join(f"{g} ({boxes[g]} boxes)" for g in results["groups"]) + " |",
             "|---|---|" + "---|" * len(results["groups"])]
    for r in results["rows"]:
        lines.append(f"| {r['name']} | {percent(r['map']['all'])} | "
                     + " | ".join(percent(r["map"][g]) for g in results["groups"]) + " |")
    lines += ["", f"How {results['single']}'s mAP falls with each deterioration alone (boxes of the other levels of "
                  "that type are out of the group; the other types do what they do):", "",
              "| deterioration | hit / strong level | none | hit, not strong | strong | boxes none / hit / strong |",
              "|---|---|---|---|---|---|"]
    for t in results["by_type"]:
        b = t["boxes"]
        cells = " | ".join(percent(t["map"][g]) for g in TYPE_GROUPS)
        lines.append(f"| {t['deterioration']} | {t['levels'][0]:g} / {t['levels'][1]:g} | {cells} | "
                     f"{b['none']} / {b['hit']} / {b['strong']} |")
    room = results.get("headroom")
    if room:
        lines += ["", f"Room for aggregation, in the arithmetic of box shares: the groups' mAPs weighted by their "
                      f"boxes give {100 * room['weighted']:.1f} ({results['single']}'s mAP: {100 * room['all']:.1f}). "
                      f"Finding every strongly deteriorated object that has a better view nearby as well as a clear "
                      f"one would add about {100 * room['better_nearby']:.1f} points; the mild ones too, about "
                      f"{100 * room['with_mild']:.1f}. An estimate: mAP is not exactly a weighted mean of the groups'."]
    if results["differences"]:
        lines += ["", f"Differences from {results['single']} per group, mAP points with paired 95% bootstrap intervals "
                      "over videos:", "", "| other | " + " | ".join(results["groups"]) + " |",
                  "|---|" + "---|" * len(results["groups"])]
        for d in results["differences"]:
            lines.append(f"| {d['other']} | " + " | ".join(difference(d[g]) for g in results["groups"]) + " |")
    return lines
