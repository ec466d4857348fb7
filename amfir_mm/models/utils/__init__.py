from .cross_modality import (first_conv, pretrained_input_channels,
                             set_input_channels)

__all__ = ['first_conv', 'set_input_channels', 'pretrained_input_channels']
