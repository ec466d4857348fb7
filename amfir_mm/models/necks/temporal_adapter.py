"""A trainable, identity-initialised adapter on a frozen backbone's
per-frame features."""
import torch
import torch.nn as nn
from mmaction.registry import MODELS
from mmengine.model import BaseModule


@MODELS.register_module()
class TemporalAdapter(BaseModule):
    """Residual low-rank temporal convolution over a video's frame features.

    ``y = x + W_up(GELU(conv1d_T(W_down(x))))``: a linear projection of
    each frame's ``C`` channels to ``rank``, a 1-D convolution over the
    ``T`` frames (kernel ``kernel_size``, zero padding so ``T`` is kept),
    GELU, and a projection back to ``C``.  ``W_up`` starts at zero, so an
    untrained adapter is the identity and a model with it predicts as one
    without it.  It gives meta-training (and AMD) parameters that reshape
    the representation of any backbone, frozen or not, at a few percent of
    its size (``2 * C * rank + kernel_size * rank ** 2`` weights).

    Args:
        in_channels (int): ``C``, the backbone's feature channels.
        rank (int): width of the bottleneck.
        kernel_size (int): temporal extent in frames (odd).
        dropout (float): dropout on the bottleneck in training.
    """

    def __init__(self,
                 in_channels: int,
                 rank: int = 64,
                 kernel_size: int = 3,
                 dropout: float = 0.0,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd and >= 1, got '
                             f'{kernel_size}')
        if rank < 1 or in_channels < 1:
            raise ValueError(f'rank and in_channels must be >= 1, got '
                             f'{rank} and {in_channels}')
        self.in_channels = in_channels
        self.down = nn.Linear(in_channels, rank)
        self.temporal = nn.Conv1d(
            rank, rank, kernel_size, padding=kernel_size // 2)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(rank, in_channels)
        self._zero_up()

    def _zero_up(self) -> None:
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def init_weights(self) -> None:
        """``init_cfg`` as usual, then ``W_up`` zeroed again: the adapter
        starts as the identity whatever ``init_cfg`` does to its layers."""
        super().init_weights()
        self._zero_up()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(..., T, C)`` per-frame features of any number of videos.

        Returns:
            ``(..., T, C)`` adapted features.
        """
        if x.shape[-1] != self.in_channels:
            raise ValueError(f'TemporalAdapter(in_channels='
                             f'{self.in_channels}) got features with '
                             f'{x.shape[-1]} channels')
        lead, (frames, channels) = x.shape[:-2], x.shape[-2:]
        h = self.down(x.reshape(-1, frames, channels))  # (videos, T, rank)
        h = self.temporal(h.transpose(1, 2)).transpose(1, 2)
        h = self.up(self.dropout(self.act(h)))
        return x + h.reshape(*lead, frames, channels)
