"""Several video streams on one machine, behind ``reports/streams.md``: N concurrent ``featflow infer`` processes
over the same synthetic video, under each threading setting, and the total frames/s they reach together.

A deployment runs several videos at once. Two jobs sharing the cores should each run about half as fast, so the
total should hold; an earlier observation here was a tenfold collapse instead (a demo beside the test suite). The
settings:
- ``default``: featflow's own sharing (``featflow.utils.threads.CoreShare``): each process counts the featflow
  processes running and takes its share of the cores, re-counting every second;
- ``fixed threads``: every process takes one thread per core whatever else runs (``OMP_NUM_THREADS=cores``: the
  default before the sharing, and torch's), OpenMP's default wait policy;
- ``passive wait``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead of spinning while they wait);
- ``shared cores``: ``featflow --threads cores/N`` per process, so that the processes' threads add up to the cores.
Each process reports its own end-to-end frames/s over its frame loop (``featflow infer``'s summary line: decoding,
model, drawing and JSON lines, start-up excluded); the total is their sum, as they run side by side.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from featflow.analysis.reports import machine_description, write_report
from featflow.errors import FeatflowError

#: name -> (environment additions, whether each process gets cores / N threads)
_CORES = str(os.cpu_count() or 1)
SETTINGS: dict[str, tuple[dict[str, str], bool]] = {
    "default": ({}, False),
    "fixed threads": ({"OMP_NUM_THREADS": _CORES}, False),
    "passive wait": ({"OMP_NUM_THREADS": _CORES, "OMP_WAIT_POLICY": "PASSIVE"}, False),
    "shared cores": ({}, True),
}
_SUMMARY = re.compile(r"frames/s in the model, ([0-9.]+) end to end")


def run_streams(video: Path, count: int, setting: str, weights: str, method: str, out: Path) -> dict:
    """``count`` concurrent ``featflow infer`` processes -> their end-to-end frames/s and the wall time of all."""
    extra, share = SETTINGS[setting]
    cores = os.cpu_count() or 1
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(extra)
    threads = ["--threads", str(max(1, cores // count))] if share else []
    commands = [[sys.executable, "-m", "featflow.cli", *threads, "infer", str(video), "--task", "det", "--weights",
                 weights, "--method", method, "--json", str(out / f"{setting}-{count}-{i}.jsonl"), "--quiet"]
                for i in range(count)]
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outputs = [p.communicate() for p in procs]
    wall = time.perf_counter() - start
    fps = []
    for proc, (stdout, stderr) in zip(procs, outputs):
        found = _SUMMARY.search(stdout)
        if proc.returncode != 0 or found is None:
            raise RuntimeError(f"featflow infer failed (exit {proc.returncode}): {stderr.strip()[-500:]}")
        fps.append(float(found.group(1)))
    return {"setting": setting, "streams": count, "threads": int(threads[1]) if threads else None,
            "fps_per_stream": fps, "total_fps": sum(fps), "wall_seconds": wall}


def run_streams_report(frames: int = 300, size: tuple[int, int] = (192, 384), counts: tuple[int, ...] = (1, 2, 4),
                       weights: str = "det-dff-r18-synth", method: str = "dff",
                       report: str | os.PathLike = "reports", command: str = "featflow bench streams",
                       progress: bool = True, settings: tuple[str, ...] = tuple(SETTINGS)) -> list[Path]:
    from benchmarks.memory_report import synthetic_video

    if 1 not in counts:
        raise FeatflowError("bench streams: the counts must include 1 (the single-stream reference)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = synthetic_video(Path(tmp) / "streams.mp4", frames, size, progress=progress)
        for setting in settings:
            for count in counts:
                row = run_streams(video, count, setting, weights, method, Path(tmp))
                if progress:
                    print(f"{setting}, {count} stream(s): {row['total_fps']:.1f} frames/s in total", file=sys.stderr)
                rows.append(row)
    single = {r["setting"]: r["total_fps"] for r in rows if r["streams"] == 1}
    for r in rows:
        r["vs_one_stream"] = r["total_fps"] / single[r["setting"]]
        r["vs_default_one_stream"] = r["total_fps"] / single.get("default", single[r["setting"]])
    lines = ["# Several streams on one machine", "",
             f"N concurrent `featflow infer` processes (the shipped {weights}, {method}) over the same {frames}-frame "
             f"synthetic video at {size[0]}x{size[1]}, on this machine's {os.cpu_count()} cores. Each process "
             "reports its end-to-end frames/s over its frame loop (start-up excluded); the total is their sum. "
             "Settings: default (featflow's own sharing: each process counts the featflow processes running and "
             "takes its share of the cores, re-counting every second), fixed threads (one per core in every "
             "process, `OMP_NUM_THREADS=cores`: the default before the sharing), the same with "
             "`OMP_WAIT_POLICY=PASSIVE`, and shared cores set by hand (`featflow --threads cores/N`).", "",
             "| setting | streams | threads each | total frames/s | vs 1 stream (same setting) | "
             "vs 1 stream (default) | wall s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['streams']} | {r['threads'] or 'default'} | {r['total_fps']:.1f} | "
                     f"{r['vs_one_stream']:.2f}x | {r['vs_default_one_stream']:.2f}x | {r['wall_seconds']:.0f} |")
    held = {s: all(r["total_fps"] >= 0.95 * single[s] for r in rows if r["setting"] == s) for s in settings}
    lines += ["", "Target: the total with 2 and 4 streams at least one stream's. Held (within 5%) under: "
              + (", ".join(s for s, ok in held.items() if ok) or "no setting") + "."]
    return write_report(report, "streams", "\n".join(lines),
                        {"frames": frames, "size": list(size), "weights": weights, "method": method, "rows": rows,
                         "held": held, "machine": machine_description()}, command)
