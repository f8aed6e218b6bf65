"""Memory over a long video, behind ``reports/memory.md``: ``featflow infer``'s own loop (decode, stream, draw,
encode, JSON lines) over a synthetic video of FRAMES frames, with the process's resident memory sampled before
every frame. The streams hold a bounded window by design (DFF its key frame, FGFA 2K+1 frames); this checks that
nothing else grows. Target: over the last thousand frames, resident memory stays within 50 MB of the level it
reached after the first hundred.
"""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

from featflow.analysis.reports import machine_description, save_figure, write_report  # noqa: E402
from featflow.apps.infer import run_infer  # noqa: E402
from featflow.data.synthetic import SynthConfig, SyntheticVideo  # noqa: E402
from featflow.data.video import open_source, write_video  # noqa: E402
from featflow.engine.predictor import load  # noqa: E402

TARGET_MB = 50.0
WARMUP = 100  # frames before the reference level
TAIL = 1000  # the last frames compared with it
#: (row name, shipped model, method, FGFA online)
RUNS = (("DFF l=10", "det-dff-r18-synth", "dff", False),
        ("FGFA offline, 21 frames", "det-fgfa-r18-synth", "fgfa", False),
        ("FGFA online, 11 frames", "det-fgfa-r18-synth", "fgfa", True))


def rss_mb() -> float:
    """This process's resident memory in MB (Linux: /proc; elsewhere the peak from getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_video(path: Path, frames: int, size: tuple[int, int], seed: int = 0, progress: bool = True) -> Path:
    """A FRAMES-frame H.264 video of the synthetic generator's scenes (one scene per 300 frames)."""
    def images():
        for start in range(0, frames, 300):
            video = SyntheticVideo(SynthConfig(size[0], size[1], min(300, frames - start)), seed, start // 300, "test")
            for t in range(video.config.num_frames):
                yield video.frame(t)

    write_video(path, tqdm(images(), total=frames, desc="write video", disable=not progress, leave=False), fps=25)
    return path


def measure(source_path: Path, weights: str, method: str, online: bool, out: Path, warmup: int = WARMUP,
            tail: int = TAIL, progress: bool = True) -> dict:
    """One ``run_infer`` over the video with the resident memory sampled before every frame."""
    model = load(weights)
    samples: list[float] = []

    def sample() -> bool:  # run_infer asks before every frame whether to stop: the hook that samples memory
        samples.append(rss_mb())
        return False

    summary = run_infer(open_source(source_path), model, method, key_interval=10, window=10,
                        online=online, out_video=out / "out.mp4", out_json=out / "out.jsonl", progress=progress,
                        stop=sample)
    level = max(samples[:warmup]) if len(samples) >= warmup else max(samples)
    last = samples[-tail:] if len(samples) > warmup + tail else samples[warmup:]
    growth = (max(last) - level) if last else 0.0
    return {"frames": summary.frames, "level_after_warmup_mb": level, "max_tail_mb": max(last) if last else level,
            "growth_mb": growth, "samples_mb": samples[::10], "wall_fps": summary.wall_fps}


def run_memory_report(frames: int = 3000, size: tuple[int, int] = (192, 384), report: str | os.PathLike = "reports",
                      command: str = "featflow bench memory", progress: bool = True) -> list[Path]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = synthetic_video(Path(tmp) / "long.mp4", frames, size, progress=progress)
        for name, weights, method, online in RUNS:
            row = measure(video, weights, method, online, Path(tmp), progress=progress)
            rows.append({"name": name, "weights": weights, "method": method, "online": online, **row})
    report = Path(report)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in rows:
        ax.plot(range(0, len(r["samples_mb"]) * 10, 10), r["samples_mb"], label=r["name"])
    ax.set_xlabel("frame")
    ax.set_ylabel("resident memory (MB)")
    ax.legend()
    save_figure(fig, report / "memory.png")
    lines = ["# Memory over a long video (featflow infer)", "",
             f"A {frames}-frame synthetic video at {size[0]}x{size[1]} through `featflow infer`'s loop (decode, "
             "stream, draw, encode, JSON lines) with the shipped detectors; the process's resident memory is "
             "sampled before every frame.", "",
             f"| run | frames | after the first {WARMUP} (MB) | max over the last {TAIL} (MB) | growth (MB) | "
             "frames/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['frames']} | {r['level_after_warmup_mb']:.0f} | {r['max_tail_mb']:.0f} | "
              f"{r['growth_mb']:+.1f} | {r['wall_fps']:.1f} |" for r in rows]
    worst = max(r["growth_mb"] for r in rows)
    lines += ["", f"Target: growth at most {TARGET_MB:.0f} MB. Largest: {worst:+.1f} MB "
                  f"({'met' if worst <= TARGET_MB else 'not met'}).", "", "![memory](memory.png)"]
    paths = write_report(report, "memory", "\n".join(lines),
                         {"frames": frames, "size": list(size), "rows": rows, "target_mb": TARGET_MB,
                          "machine": machine_description()}, command)
    return paths + [report / "memory.png"]
