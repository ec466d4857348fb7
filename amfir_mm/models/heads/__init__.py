# the episode helpers live in models/utils; re-exported here, where they
# were first defined
from ..utils.episodes import (episode_shape, gather_videos, split_episode,
                              split_episode_index)
from .base_fewshot_head import BaseFewShotHead
from .otam_head import OTAMHead, otam_cumulative_distance
from .prototype_head import PrototypeHead
from .trx_head import TRXHead

__all__ = [
    'BaseFewShotHead', 'PrototypeHead', 'split_episode', 'episode_shape',
    'split_episode_index', 'gather_videos', 'OTAMHead',
    'otam_cumulative_distance', 'TRXHead'
]
