from .cached_episode_loops import CachedEpisodeTestLoop, CachedEpisodeValLoop
from .hooks import (InitUntrainedModelHook, NonFiniteLossError,
                    NonFiniteLossHook, RNGStateHook)

__all__ = [
    'CachedEpisodeValLoop', 'CachedEpisodeTestLoop', 'InitUntrainedModelHook',
    'NonFiniteLossError', 'NonFiniteLossHook', 'RNGStateHook'
]
