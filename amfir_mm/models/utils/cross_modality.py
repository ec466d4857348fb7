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

The average is for pretrained kernels only.  A backbone trained from scratch
gets a first convolution freshly initialised for ``C_in`` inputs: averaging
a random 3-channel kernel would start every input channel (flow x and y)
with the same kernel.  :func:`loads_pretrained` and
:func:`pretrained_at_build` tell the two apart.

The kernel is resized in place (``param.data``): the ``nn.Parameter`` object
stays the same, as MMEngine's ``init_weights`` bookkeeping and any optimiser
built before initialisation require.
"""
from contextlib import ExitStack, contextmanager
from typing import Iterable, Iterator, Tuple

import torch
import torch.nn as nn
from mmaction.registry import MODELS


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


def set_input_channels(conv: nn.Conv2d,
                       in_channels: int,
                       average: bool = True) -> nn.Conv2d:
    """Give ``conv`` ``in_channels`` inputs.

    With ``average`` (a pretrained kernel) the new kernel ``(C_out,
    in_channels, k, k)`` is the old kernel's mean over its input channels,
    repeated ``in_channels`` times (TSN's cross-modality initialisation).
    Without it (a random kernel) the convolution is re-initialised for the
    new shape (``nn.Conv2d.reset_parameters``: every input channel its own
    kernel).  A no-op when the channel count is already right.

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
    layout = (
        torch.channels_last
        if conv.weight.is_contiguous(memory_format=torch.channels_last)
        and not conv.weight.is_contiguous() else torch.contiguous_format)
    with torch.no_grad():
        if average:
            mean = conv.weight.data.mean(dim=1, keepdim=True)
            kernel = mean.repeat(1, in_channels, 1, 1)
        else:
            kernel = conv.weight.data.new_empty((conv.out_channels,
                                                 in_channels) +
                                                conv.weight.shape[2:])
        conv.weight.data = kernel.contiguous(memory_format=layout)
    conv.weight.grad = None
    conv.in_channels = in_channels
    if not average:
        conv.reset_parameters()
    return conv


def loads_pretrained(backbone: nn.Module) -> bool:
    """Whether ``backbone.init_weights()`` loads a checkpoint: a set
    ``pretrained`` attribute (MMAction2's ``ResNet``, ``ResNetTSM``,
    ``MobileNetV2``, amfir-mm's ``EfficientNetLite``) or an ``init_cfg`` of
    type ``'Pretrained'`` (MMEngine / mmpretrain backbones)."""
    if getattr(backbone, 'pretrained', None):
        return True
    init_cfg = getattr(backbone, 'init_cfg', None)
    init_cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(
        isinstance(c, dict) and c.get('type') == 'Pretrained'
        for c in init_cfgs)


def pretrained_at_build(backbone_cfg: dict) -> bool:
    """Whether a backbone config's constructor already loads pretrained
    weights: MMAction2's ``torchvision.`` / ``timm.`` wrappers with
    ``pretrained`` / ``weights`` set (they are built with their weights;
    other backbones load theirs in ``init_weights``)."""
    kind = backbone_cfg.get('type')
    return (isinstance(kind, str) and kind.startswith(
        ('torchvision.', 'timm.')) and bool(
            backbone_cfg.get('pretrained') or backbone_cfg.get('weights')))


@contextmanager
def pretrained_input_channels(backbone: nn.Module,
                              in_channels: int,
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


@contextmanager
def pretrained_inputs(backbones: Iterable[Tuple[nn.Module, int]],
                      pretrained_channels: int = 3) -> Iterator[None]:
    """:func:`pretrained_input_channels` of every ``(backbone,
    in_channels)`` whose ``init_weights`` loads a checkpoint
    (:func:`loads_pretrained`) with other input channels than its own.

    Example:
        >>> with pretrained_inputs([(rgb.backbone, 3), (flow.backbone, 2)]):
        ...     model.init_weights()
    """
    with ExitStack() as stack:
        for backbone, in_channels in backbones:
            if (in_channels != pretrained_channels
                    and loads_pretrained(backbone)):
                stack.enter_context(
                    pretrained_input_channels(backbone, in_channels,
                                              pretrained_channels))
        yield


def build_with_input_channels(cfg: dict, in_channels: int) -> nn.Module:
    """Build a recogniser config (``MODELS``) whose backbone's first
    convolution takes ``in_channels`` inputs: a kernel pretrained at build
    (:func:`pretrained_at_build`) is averaged, a random one re-initialised
    (:func:`set_input_channels`)."""
    averaged = pretrained_at_build(cfg.get('backbone') or {})
    model = MODELS.build(cfg)
    set_input_channels(
        first_conv(model.backbone), in_channels, average=averaged)
    return model
