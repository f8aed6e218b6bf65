"""Two sample sets as one at a given share: ImageNet DET images among VID clips (``data.det_share``), real-texture
flow pairs among synthetic ones (``data.real_share``).

``second``'s samples are spread evenly: sample i is the next of ``second`` when floor((i + 1) * share) steps up,
else the next of ``first``. Each set keeps its own order (cycling), so synthetic samples read in order still share
their videos, and any stretch of the indices holds ``second`` at ``share``, shuffled or not. The length is the
smallest that holds every sample of both at that share.
"""

from __future__ import annotations

import math

from torch.utils.data import Dataset

#: 6 / (1 - 0.9) is 60.000000000000014 in floating point, and 60 samples hold 6 at 10%.
_EPS = 1e-9


class Mixed(Dataset):
    """``first`` and ``second`` as one set, ``share`` of its samples from ``second``."""

    def __init__(self, first: Dataset, second: Dataset, share: float) -> None:
        if not 0.0 < share < 1.0:
            raise ValueError(f"share must be in (0, 1), got {share}")
        if len(first) == 0 or len(second) == 0:
            raise ValueError("both sample sets must hold samples")
        self.first, self.second, self.share = first, second, share
        self.length = max(math.ceil(len(first) / (1.0 - share) - _EPS), math.ceil(len(second) / share - _EPS))

    def __len__(self) -> int:
        return self.length

    def _before(self, index: int) -> int:
        """How many of ``second``'s samples come before sample ``index``."""
        return math.floor(index * self.share + _EPS)

    def from_second(self, index: int) -> bool:
        """Whether sample ``index`` comes from ``second``."""
        return self._before(index + 1) > self._before(index)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        before = self._before(index)
        if self.from_second(index):
            return self.second[before % len(self.second)]
        return self.first[(index - before) % len(self.first)]
