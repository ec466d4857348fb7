"""ASI (Active Sample Inference): predict each query's modality
reliabilities from label-free evidence."""
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmaction.registry import MODELS
from mmengine.model import BaseModule

from .evidence import episode_evidence_channels


def posterior_evidence(log_probs: torch.Tensor, topk: int) -> torch.Tensor:
    """Label-free statistics of each modality's posterior.

    Per modality: the ``topk`` largest probabilities in decreasing order
    (zero-padded when ``N < topk``), the entropy normalised by ``log N``,
    and the margin ``p_(1) - p_(2)``.

    Args:
        log_probs: ``(M, S, N)`` log-posteriors.
        topk: number of sorted probabilities.

    Returns:
        ``(M, S * (topk + 2))`` evidence.
    """
    probs = log_probs.exp()
    num_classes = probs.shape[-1]
    sorted_probs = probs.sort(dim=-1, descending=True).values
    top = F.pad(sorted_probs[..., :topk], (0, max(0, topk - num_classes)))
    entropy = -(probs * log_probs).sum(-1, keepdim=True)
    entropy = entropy / math.log(num_classes) if num_classes > 1 \
        else entropy
    second = sorted_probs[..., 1:2] if num_classes > 1 \
        else torch.zeros_like(sorted_probs[..., :1])
    margin = sorted_probs[..., :1] - second
    return torch.cat([top, entropy, margin], dim=-1).flatten(1)


def cross_modal_evidence(log_probs: torch.Tensor) -> torch.Tensor:
    """Label-free statistics comparing the modalities' posteriors.

    Per ordered pair ``(a, b)``, ``a != b``: ``p_a(c_b)``, how probable
    modality ``a`` finds modality ``b``'s top class.  Per unordered pair
    ``a < b``: whether the top classes agree (0 / 1) and the Jensen-Shannon
    divergence of the two posteriors normalised by ``log 2`` (0: equal,
    1: disjoint).

    Args:
        log_probs: ``(M, S, N)`` log-posteriors.

    Returns:
        ``(M, 2 * S * (S - 1))`` evidence.
    """
    probs = log_probs.exp()
    top = probs.argmax(-1, keepdim=True)  # (M, S, 1)
    num_modalities = probs.shape[1]
    evidence = []
    for a in range(num_modalities):
        for b in range(num_modalities):
            if a != b:
                evidence.append(probs[:, a].gather(-1, top[:, b]))
    for a in range(num_modalities):
        for b in range(a + 1, num_modalities):
            evidence.append((top[:, a] == top[:, b]).to(probs.dtype))
            mix = (0.5 * (probs[:, a] + probs[:, b])).clamp_min(1e-12).log()
            js = 0.5 * ((probs[:, a] * (log_probs[:, a] - mix)).sum(-1) +
                        (probs[:, b] * (log_probs[:, b] - mix)).sum(-1))
            evidence.append((js / math.log(2)).unsqueeze(-1))
    return torch.cat(evidence, dim=-1)


@MODELS.register_module()
class ActiveSampleInference(BaseModule):
    """The reliability net: an MLP from label-free evidence to ``pi``.

    Input per query: :func:`posterior_evidence` of every modality's
    posterior (detached: ASI never trains the branches) and, optionally,
    the query's temporally pooled features of every modality (detached by
    default) and, optionally, :func:`cross_modal_evidence` (do the
    modalities agree?) and, optionally, per-episode evidence
    (:func:`episode_evidence`: distance margins, the query's rank in its
    episode, the support set's separation), which the recogniser computes.
    Output: ``log pi (M, S)``, a log-softmax over modalities.  The last
    layer starts at zero, so an untrained net gives ``pi = 1/S``.

    Args:
        num_modalities (int): ``S``.
        topk (int): sorted probabilities per modality in the evidence.
        hidden_channels (int): MLP width.
        feature_channels (Sequence[int], optional): per-modality feature
            channels; given, pooled query features join the evidence.
        detach_features (bool): stop ASI's gradient into the features.
        cross_modal (bool): add :func:`cross_modal_evidence`.
        episode_evidence (Sequence[str]): groups of
            :func:`episode_evidence` the net reads (empty: none).
        normalize_evidence (bool): standardise the evidence with a
            non-affine ``BatchNorm1d`` (running statistics at test): the
            groups have different scales.
    """

    def __init__(self,
                 num_modalities: int = 2,
                 topk: int = 3,
                 hidden_channels: int = 64,
                 feature_channels: Optional[Sequence[int]] = None,
                 detach_features: bool = True,
                 cross_modal: bool = False,
                 episode_evidence: Sequence[str] = (),
                 normalize_evidence: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_modalities = num_modalities
        self.topk = topk
        self.feature_channels = (
            tuple(feature_channels) if feature_channels else None)
        if self.feature_channels and \
                len(self.feature_channels) != num_modalities:
            raise ValueError('feature_channels needs one entry per modality')
        self.detach_features = detach_features
        self.cross_modal = cross_modal
        in_channels = num_modalities * (topk + 2) + sum(self.feature_channels
                                                        or ())
        if cross_modal:
            in_channels += 2 * num_modalities * (num_modalities - 1)
        self.episode_evidence = tuple(episode_evidence)
        in_channels += episode_evidence_channels(self.episode_evidence,
                                                 num_modalities)
        self.norm = (
            nn.BatchNorm1d(in_channels, affine=False)
            if normalize_evidence else nn.Identity())
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden_channels), nn.ReLU(inplace=True),
            nn.Linear(hidden_channels, num_modalities))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    @property
    def uses_features(self) -> bool:
        return self.feature_channels is not None

    def forward(self,
                log_probs: torch.Tensor,
                features: Optional[Sequence[torch.Tensor]] = None,
                episode: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            log_probs: ``(M, S, N)`` modality log-posteriors.
            features: ``S`` tensors ``(M, C_s)`` of pooled query features
                (needed iff ``feature_channels`` was given).
            episode: ``(M, F)`` :func:`episode_evidence` of the queries
                (needed iff ``episode_evidence`` is not empty).

        Returns:
            ``(M, S)`` ``log pi``.
        """
        evidence = [posterior_evidence(log_probs.detach(), self.topk)]
        if self.cross_modal:
            evidence.append(cross_modal_evidence(log_probs.detach()))
        if self.uses_features:
            if features is None:
                raise ValueError('this ASI net needs the query features')
            evidence += [
                f.detach() if self.detach_features else f for f in features
            ]
        if self.episode_evidence:
            if episode is None:
                raise ValueError('this ASI net reads episode evidence '
                                 f'{self.episode_evidence}; none was given')
            evidence.append(episode.detach())
        evidence = self.norm(torch.cat(evidence, dim=1))
        return F.log_softmax(self.mlp(evidence), dim=-1)
