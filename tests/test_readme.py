"""The README's Python example runs as written."""

import re
from pathlib import Path

from featflow.data.synthetic import SynthConfig, SyntheticVideo
from featflow.data.video import write_video

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"<!-- example: api -->\s*```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    video = SyntheticVideo(SynthConfig(128, 256, 12), seed=3, index=0, split="test")
    write_video(tmp_path / "clip.mp4", (video.frame(t) for t in range(12)), fps=10)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and lines[0].startswith("frame 0: key frame") and lines[1].startswith("frame 1: propagated")
    assert lines[5].startswith("frame 5: key frame") and all("background" in line for line in lines)
