from .asi_stage import AMFIRTrainLoop, ASIStage
from .cached_episode_loops import CachedEpisodeTestLoop, CachedEpisodeValLoop
from .hooks import (InitUntrainedModelHook, NonFiniteLossError,
                    NonFiniteLossHook, RNGStateHook)

__all__ = [
    'AMFIRTrainLoop', 'ASIStage', 'CachedEpisodeValLoop',
    'CachedEpisodeTestLoop', 'InitUntrainedModelHook', 'NonFiniteLossError',
    'NonFiniteLossHook', 'RNGStateHook'
]
