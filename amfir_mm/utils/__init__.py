from .dist import close_distributed
from .memory_format import ChannelsLastRunner, convert_to_channels_last

__all__ = [
    'close_distributed', 'ChannelsLastRunner', 'convert_to_channels_last'
]
