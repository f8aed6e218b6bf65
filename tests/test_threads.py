"""featflow.utils.threads: concurrent featflow processes share the cores."""

import os
import subprocess
import sys

import pytest

from featflow.utils.threads import CoreShare


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # ended and reaped: no process has it (until the system reuses it)


def test_a_process_takes_its_share_of_the_cores_and_gives_it_back(tmp_path):
    applied = []
    share = CoreShare(4, tmp_path, period=0.0, apply=applied.append)
    with share:
        assert share.threads == 4 and applied == []  # alone: every core, nothing to change
        (tmp_path / str(os.getppid())).write_text("")  # another live featflow process starts
        assert share.update() == 2 and applied == [2]
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            (tmp_path / str(sleeper.pid)).write_text("")
            assert share.update() == 1  # 4 // 3
        finally:
            sleeper.kill()
            sleeper.wait()
        assert share.update() == 2  # the sleeper ended: its entry is dropped
        assert not (tmp_path / str(sleeper.pid)).exists()
        (tmp_path / str(os.getppid())).unlink()
        assert share.update() == 4 and applied == [2, 1, 2, 4]
    assert list(tmp_path.iterdir()) == []  # it leaves on exit


def test_the_share_is_never_below_one_thread_and_dead_entries_do_not_count(tmp_path):
    (tmp_path / str(_dead_pid())).write_text("")
    (tmp_path / "not-a-pid").write_text("")
    with CoreShare(1, tmp_path, apply=lambda n: None) as share:
        assert share.peers() == 1 and share.threads == 1
        (tmp_path / str(os.getppid())).write_text("")
        assert share.update(force=True) == 1  # 1 // 2 rounds up to one thread
    with pytest.raises(ValueError, match="at least 1"):
        CoreShare(0, tmp_path)


def test_it_re_counts_at_most_once_a_period(tmp_path):
    with CoreShare(2, tmp_path, period=3600.0, apply=lambda n: None) as share:
        (tmp_path / str(os.getppid())).write_text("")
        assert share.update() == 2  # counted on entry, not again within the hour
        assert share.update(force=True) == 1


def test_infer_shares_the_cores_unless_the_threads_were_set(monkeypatch):
    from featflow.cli.infer import _core_share

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert isinstance(_core_share("cpu"), CoreShare)
    assert not isinstance(_core_share("cuda"), CoreShare)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # featflow --threads sets it, and so may the user
    assert not isinstance(_core_share("cpu"), CoreShare)
