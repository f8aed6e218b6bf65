"""Sharing the machine's cores among the featflow processes that run on it at the same time.

Each process runs its operators on a team of threads, one per core by default. Two processes that each do so put
twice as many threads as cores on the machine, and OpenMP threads spin while they wait for each other: on 2 cores,
2 concurrent streams then ran at 0.40x and 4 at 0.25x the total of one (``reports/streams.md``). Given their share
of the cores instead (``featflow --threads cores/N``), 2 and 4 streams ran at 1.67x and 1.76x.

``CoreShare`` does that on its own. Each process that joins writes its pid into a folder of this user's featflow
processes; every ``period`` seconds (``update``, called between frames) it counts the live ones and takes
``cores // count`` threads (at least one), so a process started alone uses every core and gives them up as others
start, and takes them back when they end. The thread count is set from the thread that runs the model: OpenMP's
count belongs to the thread that sets it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def default_folder() -> Path:
    """Where this user's featflow processes register: a folder under the system's temporary directory."""
    return Path(tempfile.gettempdir()) / f"featflow-{os.getuid()}" / "processes"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class CoreShare:
    """This process's share of ``cores`` among the live processes registered in ``folder``. Use it as a context
    (registers on entry, leaves on exit) and call ``update()`` often: it re-counts at most every ``period`` seconds.
    ``apply(threads)`` sets the thread count (torch's intra-op pool by default)."""

    def __init__(self, cores: int, folder: Path | None = None, period: float = 1.0,
                 apply: Callable[[int], None] = _set_torch_threads, pid: int | None = None) -> None:
        if cores < 1:
            raise ValueError(f"cores must be at least 1, got {cores}")
        self.cores, self.folder, self.period, self.apply = cores, folder or default_folder(), period, apply
        self.pid = pid if pid is not None else os.getpid()
        self.threads = cores
        self._checked = float("-inf")

    @property
    def _entry(self) -> Path:
        return self.folder / str(self.pid)

    def peers(self) -> int:
        """The live registered processes, this one included; entries of processes that have ended are removed."""
        count = 0
        for entry in self.folder.iterdir() if self.folder.is_dir() else ():
            if not entry.name.isdigit():
                continue
            if int(entry.name) == self.pid or _alive(int(entry.name)):
                count += 1
            else:
                entry.unlink(missing_ok=True)  # a process that died without leaving
        return max(count, 1)

    def update(self, force: bool = False) -> int:
        """Re-count the peers (at most every ``period`` seconds unless ``force``) and set this process's threads
        to its share; -> the threads in use."""
        now = time.monotonic()
        if force or now - self._checked >= self.period:
            self._checked = now
            threads = max(1, self.cores // self.peers())
            if threads != self.threads:
                self.apply(threads)
                self.threads = threads
        return self.threads

    def __enter__(self) -> CoreShare:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._entry.write_text("")
        self.update(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._entry.unlink(missing_ok=True)
