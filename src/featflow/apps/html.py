"""``featflow report DIR``: one self-contained HTML page from a run folder (the demo's output, ``reports/``).

The page holds every Markdown summary of the folder (tables and text), its plots and pictures (PNG, inlined as
data URIs where the Markdown shows them, the others in a gallery) and its videos (MP4, inlined, with controls),
so it can be mailed or opened anywhere without the folder. A training run's folder (``featflow train``: its
``metrics.json``, or the ``training_state.pt`` of a run still going or interrupted) gets its curves: the smoothed
loss and every held-out metric against the iterations, and the table of its evaluations.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import markdown

from featflow.errors import FeatflowError, MissingInput
from featflow.utils.io import write_text

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr:nth-child(even) { background: #f6f6f6; }
img, video { max-width: 100%; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
section { border-top: 1px solid #ddd; margin-top: 2em; }
"""


_IMG_SRC = re.compile(r'(<img [^>]*src=)"([^"]+)"')


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _visible(folder: Path, pattern: str) -> list[Path]:
    """Files of the folder matching ``pattern``, leaving out hidden and temporary ones."""
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))


def training_history(folder: Path) -> list[dict[str, Any]]:
    """The evaluations of the training run in ``folder``: ``metrics.json`` of a finished run, else the history in
    the last checkpoint's ``training_state.pt`` (a run still going, or interrupted); empty for other folders."""
    metrics, state = folder / "metrics.json", folder / "training_state.pt"
    if metrics.is_file():
        return list(json.loads(metrics.read_text()).get("history", []))
    if state.is_file():
        import torch  # only for a run without metrics.json: the history is inside its checkpoint

        return list(json.loads(torch.load(state, weights_only=True, map_location="cpu")["history"]))
    return []


def _training_section(history: list[dict[str, Any]]) -> str:
    """The curves (one panel for the loss, one per held-out metric) and the table of a run's evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [k for k in history[0] if k not in ("iteration", "wall_seconds")]
    iterations = [h["iteration"] for h in history]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), squeeze=False)
    for ax, key in zip(axes[0], metrics):
        values = [h.get(key) for h in history]
        ax.plot(iterations, [float("nan") if v is None else v for v in values], marker="o")
        ax.set_xlabel("iteration")
        ax.set_title("smoothed training loss" if key == "loss" else key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    curves = base64.b64encode(buffer.getvalue()).decode("ascii")
    header = "".join(f"<th>{html.escape(k)}</th>" for k in ["iteration", *metrics, "minutes"])
    rows = "".join("<tr>" + f"<td>{h['iteration']}</td>"
                   + "".join(f"<td>{'-' if h.get(k) is None else f'{h[k]:.4g}'}</td>" for k in metrics)
                   + f"<td>{h.get('wall_seconds', 0) / 60:.1f}</td></tr>" for h in history)
    return (f'<section><h2>Training</h2><img src="data:image/png;base64,{curves}" alt="training curves">'
            f"<table><tr>{header}</tr>{rows}</table></section>")


def render_html_report(folder: str | os.PathLike, title: str | None = None) -> str:
    """The page for ``folder`` as one HTML string (no external references)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInput(f"no such run folder: {folder}")
    docs = _visible(folder, "*.md")
    docs.sort(key=lambda p: (p.name != "summary.md", p.name))  # the demo's summary first
    images, videos = _visible(folder, "*.png"), _visible(folder, "*.mp4")
    history = training_history(folder)
    if not (docs or images or videos or history):
        raise FeatflowError(f"{folder} holds nothing to report (no .md, .png or .mp4 files, and no training run)")
    shown: set[str] = set()

    def inline(match: re.Match) -> str:
        src = html.unescape(match.group(2))
        target = folder / src
        if src.startswith(("http:", "https:", "data:")) or not target.is_file():
            return match.group(0)
        shown.add(target.name)
        mime = "video/mp4" if target.suffix.lower() == ".mp4" else "image/png"
        return f'{match.group(1)}"{_data_uri(target, mime)}"'

    sections = [_training_section(history)] if history else []
    for doc in docs:
        body = markdown.markdown(doc.read_text(encoding="utf-8"), extensions=["tables", "fenced_code"])
        body = _IMG_SRC.sub(inline, body)
        sections.append(f"<section><p><small>{html.escape(doc.name)}</small></p>{body}</section>")
    for video in videos:
        sections.append(f"<section><h2>{html.escape(video.name)}</h2><video controls muted loop preload=\"auto\" "
                        f"src=\"{_data_uri(video, 'video/mp4')}\"></video></section>")
    extra = [p for p in images if p.name not in shown]
    if extra:
        figures = "".join(f'<figure><img src="{_data_uri(p, "image/png")}" alt="{html.escape(p.stem)}">'
                          f"<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in extra)
        sections.append(f"<section><h2>Figures</h2>{figures}</section>")
    title = title or f"featflow: {folder.resolve().name}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(sections)
            + "\n</body></html>\n")


def write_html_report(folder: str | os.PathLike, out: str | os.PathLike | None = None,
                      title: str | None = None) -> Path:
    """Write ``render_html_report(folder)`` to ``out`` (default ``folder/report.html``), atomically."""
    out = Path(out) if out is not None else Path(folder) / "report.html"
    write_text(out, render_html_report(folder, title))
    return out
