from . import transforms  # noqa: F401 (registers the paired transforms)
from .episodic_dataset import EpisodeError, EpisodicDataset
from .fewshot_video_dataset import FewShotRawframeDataset
from .split_reader import (SplitEntry, SplitFormatError, count_frames,
                           read_split_file, scan_class_folders)

__all__ = [
    'EpisodicDataset', 'EpisodeError', 'FewShotRawframeDataset', 'SplitEntry',
    'SplitFormatError', 'read_split_file', 'scan_class_folders', 'count_frames'
]
