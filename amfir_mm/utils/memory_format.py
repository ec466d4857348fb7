"""``channels_last`` memory format for the 2D backbones.

PyTorch's channels-last (NHWC) layout lets cuDNN's tensor-core kernels
(mixed precision on Volta and later) and oneDNN's CPU kernels skip layout
conversions; it changes no values.  MMEngine has no switch for it, so
amfir-mm adds one where MMEngine applies its own ``sync_bn`` option: in
:meth:`Runner.wrap_model`, before the model is put into DDP (a parameter
whose strides change after DDP is built gets wrong gradients in the first
iteration).  In a config::

    runner_type = 'ChannelsLastRunner'

(``tools/train.py --channels-last`` sets it; ``tools/train.py`` and
``tools/test.py`` build the runner from ``runner_type`` as MMAction2's tools
do).  :func:`convert_to_channels_last` converts the model's 4D parameters
(convolution kernels) with ``model.to(memory_format=torch.channels_last)``
and, with a forward pre-hook, the 4D ``(N, C, H, W)`` inputs of every
backbone; 5D episode tensors ``(B, V * T, C, H, W)`` are left alone until
the recogniser flattens them to 4D, so the recognisers are unchanged.
Weight initialisation and checkpoint loading afterwards copy into the
parameters and keep the layout.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from mmaction.registry import RUNNERS
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

_FLAG = '_amfir_channels_last_inputs'


def _to_channels_last(value):
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


def _channels_last_inputs(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: 4D tensor arguments to channels-last."""
    return tuple(_to_channels_last(a) for a in args)


def convert_to_channels_last(model: nn.Module,
                             input_modules: Optional[Sequence[str]] = None
                             ) -> List[str]:
    """Put a model's 4D parameters and its backbones' 4D inputs in
    channels-last memory format (in place; idempotent).

    Args:
        model: the model (unwrapped; for a DDP wrapper pass ``.module``).
        input_modules: names (as in ``model.named_modules()``) of the
            modules whose 4D positional inputs are converted.  By default
            every submodule called ``backbone`` (``backbone``,
            ``branches.rgb.backbone``, ...), or the model itself if it has
            none.

    Returns:
        list[str]: the modules whose inputs are converted (``''`` is the
        model itself).
    """
    # Parameters are updated in place (``param.data``), so an optimizer or
    # wrapper built earlier keeps pointing at them.
    model.to(memory_format=torch.channels_last)
    modules = dict(model.named_modules())
    if input_modules is None:
        input_modules = [
            n for n in modules if n.rsplit('.', 1)[-1] == 'backbone'
        ] or ['']
    for name in input_modules:
        module = modules[name]
        if not getattr(module, _FLAG, False):
            module.register_forward_pre_hook(_channels_last_inputs)
            setattr(module, _FLAG, True)
    return list(input_modules)


@RUNNERS.register_module()
class ChannelsLastRunner(Runner):
    """MMEngine's :class:`Runner`, training and testing in channels-last
    memory format (see the module doc).

    The model is converted by :func:`convert_to_channels_last` just before
    :meth:`Runner.wrap_model` moves it to the device, converts SyncBN
    (``cfg.sync_bn``) and wraps it in DDP.
    """

    def wrap_model(self, model_wrapper_cfg: Optional[dict],
                   model: nn.Module) -> nn.Module:
        if not is_model_wrapper(model):
            names = convert_to_channels_last(model)
            self.logger.info(
                'channels_last: 4D parameters and the 4D inputs of '
                f'{[n or "<model>" for n in names]} converted')
        return super().wrap_model(model_wrapper_cfg, model)
