from .cross_modality import (first_conv, loads_pretrained, pretrained_at_build,
                             pretrained_input_channels, set_input_channels)

__all__ = [
    'first_conv', 'set_input_channels', 'pretrained_input_channels',
    'loads_pretrained', 'pretrained_at_build'
]
