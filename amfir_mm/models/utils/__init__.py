from .cross_modality import (build_with_input_channels, first_conv,
                             loads_pretrained, pretrained_at_build,
                             pretrained_input_channels, pretrained_inputs,
                             set_input_channels)
from .episodes import (episode_shape, gather_videos, map_episode_batches,
                       pooled_videos, split_episode, split_episode_index)

__all__ = [
    'first_conv', 'set_input_channels', 'pretrained_input_channels',
    'loads_pretrained', 'pretrained_at_build', 'pretrained_inputs',
    'build_with_input_channels', 'episode_shape', 'gather_videos',
    'map_episode_batches', 'pooled_videos', 'split_episode',
    'split_episode_index'
]
