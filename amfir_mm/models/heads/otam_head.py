"""OTAM head (Cao et al., CVPR 2020): ordered temporal alignment distance."""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmaction.registry import MODELS

from .base_fewshot_head import BaseFewShotHead


def soft_min(values: List[torch.Tensor], gamma: torch.Tensor
             ) -> torch.Tensor:
    """Smooth minimum ``-gamma * log(sum_i exp(-v_i / gamma))``.

    Tends to ``min_i v_i`` as ``gamma -> 0``.
    """
    if len(values) == 1:
        return values[0]
    stacked = torch.stack(values)
    return -gamma * torch.logsumexp(-stacked / gamma, dim=0)


def otam_cumulative_distance(dists: torch.Tensor,
                             gamma: torch.Tensor) -> torch.Tensor:
    """OTAM's cumulative alignment distance in one direction.

    ``dists`` is padded with a zero column before the first and after the
    last frame of the second sequence (so the alignment may start and end
    anywhere), then accumulated with OTAM's recursion, where ``min`` is the
    smooth :func:`soft_min`::

        g(0, m) = D(0, m) + g(0, m - 1)                      (first row)
        g(l, 0) = 0                                          (start pad)
        g(l, m) = D(l, m) + min(g(l-1, m-1), g(l, m-1))      (frames)
        g(l, S+1) = min(g(l-1, S), g(l, S), g(l-1, S+1))     (end pad)

    i.e. diagonal and horizontal moves everywhere, vertical moves only in
    the two (zero-cost) padding columns.

    Args:
        dists: ``(..., L, S)`` frame-to-frame distances.
        gamma: smoothing (a scalar tensor, > 0).

    Returns:
        ``(...)`` the cumulative distance ``g(L - 1, S + 1)``.
    """
    padded = F.pad(dists, (1, 1))  # (..., L, S + 2)
    length, width = padded.shape[-2:]
    # Rows are kept as Python lists of (...) tensors: no in-place writes,
    # so autograd sees a plain graph.
    prev = [padded[..., 0, 0]]
    for m in range(1, width):
        prev.append(prev[-1] + padded[..., 0, m])
    for row in range(1, length):
        cur = [torch.zeros_like(prev[0])]
        for m in range(1, width - 1):
            cur.append(padded[..., row, m] +
                       soft_min([prev[m - 1], cur[m - 1]], gamma))
        cur.append(soft_min([prev[width - 2], cur[width - 2],
                             prev[width - 1]], gamma))
        prev = cur
    return prev[-1]


@MODELS.register_module()
class OTAMHead(BaseFewShotHead):
    """Ordered Temporal Alignment Module head.

    The frame-to-frame distance of a query ``(T, C)`` and a support video
    ``(T, C)`` is ``1 - cos``; their video distance is the OTAM cumulative
    alignment distance (:func:`otam_cumulative_distance`), averaged over the
    query->support and support->query directions when ``symmetric``.  A
    class's distance is the mean over its ``K`` shots.

    Args:
        gamma (float): smoothing of the soft minimum (OTAM: 0.1).
        learn_gamma (bool): learn ``log gamma``.
        symmetric (bool): average both alignment directions.
        temperature (float): initial ``tau`` of the logits ``-d / tau``.
    """

    def __init__(self, gamma: float = 0.1, learn_gamma: bool = False,
                 symmetric: bool = True, temperature: float = 1.0,
                 **kwargs) -> None:
        if gamma <= 0:
            raise ValueError(f'gamma must be > 0, got {gamma}')
        super().__init__(temperature=temperature, **kwargs)
        log_gamma = torch.tensor(float(gamma)).log()
        if learn_gamma:
            self.log_gamma = nn.Parameter(log_gamma)
        else:
            self.register_buffer('log_gamma', log_gamma)
        self.symmetric = symmetric

    @property
    def gamma(self) -> torch.Tensor:
        return self.log_gamma.exp()

    def distances(self, support: torch.Tensor, query: torch.Tensor,
                  num_ways: int, num_shots: int) -> torch.Tensor:
        query = F.normalize(query, dim=-1)
        support = F.normalize(support, dim=-1)
        # (M, N * K, T_query, T_support)
        frame_dists = 1 - torch.einsum('mic,sjc->msij', query, support)
        dist = otam_cumulative_distance(frame_dists, self.gamma)
        if self.symmetric:
            dist = 0.5 * (dist + otam_cumulative_distance(
                frame_dists.transpose(-1, -2), self.gamma))
        return dist.reshape(query.shape[0], num_ways, num_shots).mean(-1)
