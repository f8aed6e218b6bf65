"""featflow report: one self-contained HTML page, checked in headless Chromium (plots load, the video plays)."""

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from featflow.apps.html import render_html_report
from featflow.cli import main
from featflow.data.io import write_image
from featflow.data.video import write_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

# Appended to a copy of the page: once everything has loaded, it records what did in a body attribute.
_PROBE = """<script>
function probe() {
  const images = [...document.images], videos = [...document.querySelectorAll('video')];
  document.body.setAttribute('data-probe', JSON.stringify({images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length, videos: videos.length,
    playable: videos.filter(v => v.readyState >= 2 && v.videoWidth > 0).length}));
}
window.addEventListener('load', () => Promise.all([...document.querySelectorAll('video')].map(v => v.readyState >= 2 ? 0 :
  new Promise(done => { v.addEventListener('loadeddata', done); v.addEventListener('error', done); }))).then(probe));
</script>"""  # noqa: E501 (the page's script, kept as it is)


@pytest.fixture
def run_folder(tmp_path):
    folder = tmp_path / "run"
    write_video(folder / "demo.mp4", [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(10)], fps=10)
    write_image(folder / "tradeoff.png", np.zeros((20, 30, 3), np.uint8))
    write_image(folder / "flow.png", np.full((20, 30, 3), 255, np.uint8))
    (folder / "summary.md").write_text("# Demo\n\n| method | mIoU (%) |\n|---|---|\n| DFF | 35.9 |\n\n"
                                       "![plot](tradeoff.png)\n")
    (folder / ".summary.abc.tmp.md").write_text("a half-written temporary file")
    return folder


def test_page_is_self_contained(run_folder):
    page = render_html_report(run_folder, title="t")
    assert "<table>" in page and "<td>35.9</td>" in page
    assert page.count("data:image/png;base64,") == 2  # the plot where the summary shows it, the flow in the gallery
    assert page.count("data:video/mp4;base64,") == 1
    assert "half-written" not in page
    srcs = re.findall(r'src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:") for s in srcs)  # nothing the page needs lies outside it


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium; .ci/run installs it)")
def test_page_loads_in_headless_chromium(run_folder, tmp_path):
    assert main(["report", str(run_folder)]) == 0
    probe = tmp_path / "probe.html"
    probe.write_text((run_folder / "report.html").read_text().replace("</body>", _PROBE + "</body>"))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert result == {"images": 2, "loaded": 2, "videos": 1, "playable": 1}


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "nothing to report" in capsys.readouterr().err


def test_a_training_run_folder_gets_its_curves(tmp_path, capsys):
    """``featflow report runs/det/X`` used to fail ("nothing to report"): a training run holds no Markdown, only its
    metrics (``metrics.json`` when finished, ``training_state.pt`` while it runs or after an interrupt)."""
    import torch

    history = [{"iteration": 100 * k, "loss": 2.0 / k, "val_map": 0.05 * k, "wall_seconds": 60.0 * k}
               for k in range(1, 4)]
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "metrics.json").write_text(json.dumps({"name": "det", "history": history}))
    assert main(["report", str(finished)]) == 0
    page = (finished / "report.html").read_text()
    assert "<h2>Training</h2>" in page and page.count("data:image/png;base64,") == 1
    assert "val_map" in page and "<td>300</td>" in page and "<td>0.15</td>" in page
    running = tmp_path / "running"  # no metrics.json yet: the checkpoint's history
    running.mkdir()
    torch.save({"iteration": 200, "history": json.dumps(history[:2])}, running / "training_state.pt")
    page = render_html_report(running)
    assert "<td>200</td>" in page and "<td>300</td>" not in page
