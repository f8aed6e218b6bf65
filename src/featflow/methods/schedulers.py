"""Key-frame schedulers: which frames of a stream run the expensive feature network N_feat."""

from __future__ import annotations

from typing import Protocol


class KeyFrameScheduler(Protocol):
    """Decides, frame by frame, whether the current frame becomes the new key frame."""

    def reset(self) -> None:
        """Forget everything: a new video starts."""

    def is_key(self, index: int) -> bool:
        """Whether frame ``index`` (counted from the start of the stream) is a key frame."""


class FixedInterval:
    """The papers' schedule: every ``interval``-th frame is a key frame (l = 1 is per-frame)."""

    def __init__(self, interval: int) -> None:
        if interval < 1:
            raise ValueError(f"the key-frame interval must be at least 1, got {interval}")
        self.interval = interval

    def reset(self) -> None:
        pass

    def is_key(self, index: int) -> bool:
        return index % self.interval == 0
