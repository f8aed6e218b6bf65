"""Synthetic training videos visited in interleaved blocks.

Consecutive sample indices cycle through ``videos_in_flight`` videos (``frames_per_video`` samples each), so a
batch of that size read in order holds as many different videos (batch statistics of one video make BatchNorm
training stall), while each video is built once and kept only while its block is being read.
"""

from __future__ import annotations

from featflow.data.synthetic import SynthConfig, SyntheticVideo


class InterleavedVideos:
    """Sample index -> its synthetic video, with at most ``videos_in_flight`` videos held at a time."""

    def __init__(self, config: SynthConfig, seed: int, split: str, frames_per_video: int, videos_in_flight: int,
                 cache_size: int) -> None:
        if frames_per_video < 1 or videos_in_flight < 1:
            raise ValueError("frames_per_video and videos_in_flight must be positive")
        self.config, self.seed, self.split, self.cache_size = config, seed, split, cache_size
        self.frames_per_video, self.videos_in_flight = frames_per_video, videos_in_flight
        self._videos: dict[int, SyntheticVideo] = {}

    def video_of(self, index: int) -> int:
        """The video sample ``index`` comes from: blocks of ``videos_in_flight`` videos, visited in turn."""
        block, within = divmod(index, self.videos_in_flight * self.frames_per_video)
        return block * self.videos_in_flight + within % self.videos_in_flight

    def __getitem__(self, index: int) -> SyntheticVideo:
        number = self.video_of(index)
        video = self._videos.get(number)
        if video is None:
            if len(self._videos) >= self.videos_in_flight:
                self._videos.pop(next(iter(self._videos)))
            video = self._videos[number] = SyntheticVideo(self.config, self.seed, number, self.split,
                                                          cache_size=self.cache_size)
        return video
