from .dist import close_distributed
from .memory_format import ChannelsLastRunner, convert_to_channels_last
from .runner import build_runner
from .train_options import (UnsupportedOptionError, apply_train_options,
                            check_device_options)

__all__ = [
    'close_distributed', 'ChannelsLastRunner', 'convert_to_channels_last',
    'build_runner', 'UnsupportedOptionError', 'apply_train_options',
    'check_device_options'
]
