"""TSN's cross-modality initialisation of a backbone's first convolution.

An ImageNet backbone takes 3-channel RGB frames; a flow backbone takes
``C_in`` channels (2 for ``(dx, dy)``).  Following TSN (Wang et al., ECCV
2016), the first convolution's ImageNet kernel is averaged over its input
channels and the average is repeated ``C_in`` times.

The adaptation works on any backbone (MMAction2's ``ResNet``, ``ResNetTSM``,
``MobileNetV2``, ``MobileNetV2TSM``, torchvision / timm wrappers) because it
only touches the first ``nn.Conv2d`` it finds, and it works with the
backbones' own pretrained loading (``pretrained=``, ``pretrained2d``,
``init_cfg=dict(type='Pretrained', ...)``): during ``init_weights`` the
convolution is temporarily given the 3 input channels the checkpoint has
(:func:`pretrained_input_channels`), and is averaged back afterwards.

The kernel is resized in place (``param.data``): the ``nn.Parameter`` object
stays the same, as MMEngine's ``init_weights`` bookkeeping and any optimiser
built before initialisation require.
"""
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn


def first_conv(backbone: nn.Module) -> nn.Conv2d:
    """The first ``nn.Conv2d`` of ``backbone`` in module registration order.

    Raises:
        TypeError: the backbone has no ``nn.Conv2d``.
    """
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise TypeError(f'{type(backbone).__name__} has no nn.Conv2d to adapt '
                    'to the input channels')


def set_input_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Give ``conv`` ``in_channels`` inputs by cross-modality averaging.

    The new kernel ``(C_out, in_channels, k, k)`` is the old kernel's mean
    over its input channels, repeated ``in_channels`` times (TSN).  A
    no-op when the channel count is already right.

    Returns:
        The same (modified) convolution.
    """
    if conv.in_channels == in_channels:
        return conv
    if conv.groups != 1:
        raise ValueError('cross-modality initialisation needs a first '
                         f'convolution with groups=1, got {conv.groups}')
    # Keep the kernel's memory format (channels-last models, see
    # amfir_mm.utils.memory_format): a DDP-wrapped parameter must not change
    # its strides.
    layout = (torch.channels_last
              if conv.weight.is_contiguous(memory_format=torch.channels_last)
              and not conv.weight.is_contiguous() else torch.contiguous_format)
    with torch.no_grad():
        mean = conv.weight.data.mean(dim=1, keepdim=True)
        conv.weight.data = mean.repeat(1, in_channels, 1, 1).contiguous(
            memory_format=layout)
    conv.weight.grad = None
    conv.in_channels = in_channels
    return conv


@contextmanager
def pretrained_input_channels(backbone: nn.Module, in_channels: int,
                              pretrained_channels: int = 3
                              ) -> Iterator[nn.Conv2d]:
    """Let pretrained RGB weights load into a backbone adapted to
    ``in_channels`` inputs.

    Inside the context the first convolution has ``pretrained_channels``
    inputs (so ``backbone.init_weights()`` loads a 3-channel checkpoint
    without shape errors); on exit it is averaged to ``in_channels``
    (:func:`set_input_channels`), i.e. the loaded ImageNet kernel becomes
    the cross-modality initialisation.

    Example:
        >>> with pretrained_input_channels(backbone, 2):
        ...     backbone.init_weights()
    """
    conv = first_conv(backbone)
    set_input_channels(conv, pretrained_channels)
    try:
        yield conv
    finally:
        set_input_channels(conv, in_channels)
