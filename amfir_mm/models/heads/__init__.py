from .base_fewshot_head import BaseFewShotHead, split_episode
from .otam_head import OTAMHead, otam_cumulative_distance
from .prototype_head import PrototypeHead
from .trx_head import TRXHead

__all__ = [
    'BaseFewShotHead', 'PrototypeHead', 'split_episode', 'OTAMHead',
    'otam_cumulative_distance', 'TRXHead'
]
