from .base_fewshot_head import (BaseFewShotHead, episode_shape, gather_videos,
                                split_episode, split_episode_index)
from .otam_head import OTAMHead, otam_cumulative_distance
from .prototype_head import PrototypeHead
from .trx_head import TRXHead

__all__ = [
    'BaseFewShotHead', 'PrototypeHead', 'split_episode', 'episode_shape',
    'split_episode_index', 'gather_videos', 'OTAMHead',
    'otam_cumulative_distance', 'TRXHead'
]
