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


def cross_modal_support(log_probs: torch.Tensor) -> torch.Tensor:
    """How probable the other modalities find each modality's top class.

    Per modality ``s``: the mean over ``a != s`` of ``p_a(c_s)``, ``c_s``
    the top class of modality ``s`` (the per-modality reading of
    :func:`cross_modal_evidence`; 0 with one modality).

    Args:
        log_probs: ``(M, S, N)`` log-posteriors.

    Returns:
        ``(M, S, 1)`` evidence.
    """
    probs = log_probs.exp()
    num_modalities = probs.shape[1]
    if num_modalities < 2:
        return probs.new_zeros(*probs.shape[:2], 1)
    top = probs.argmax(-1)  # (M, S)
    # received[m, a, s] = p_a(c_s) of query m
    index = top[:, None, :].expand(-1, num_modalities, -1)
    received = probs.gather(-1, index)
    others = received.sum(1) - received.diagonal(dim1=1, dim2=2)
    return (others / (num_modalities - 1)).unsqueeze(-1)


SCORERS = ('joint', 'shared')


@MODELS.register_module()
class ActiveSampleInference(BaseModule):
    """The reliability net: label-free evidence to ``pi``.

    Two scorers (``scorer``):

    * ``'joint'``: one MLP reads the evidence of all modalities at once
      and outputs ``S`` logits.  It can learn anything, including "trust
      flow" as a constant or a class-specific rule read off the features:
      fitted on meta-training classes, such rules need not transfer to
      novel ones.
    * ``'shared'``: one scorer ``f`` (linear with ``hidden_channels=0``)
      reads *each modality's own* evidence ``e_s`` and ``log pi =
      log_softmax_s f(e_s)``.  The modalities are exchangeable (swapping
      their evidence swaps ``pi``; equal evidence gives ``pi = 1/S``), so
      ``pi`` depends only on how the modalities' evidence differs, and,
      with a linear ``f``, a shift that moves every modality's evidence
      alike (novel-class posteriors flatter than training ones) cancels,
      the standardisation's mean included.  Per modality it reads its
      posterior statistics, with ``cross_modal`` how probable the other
      modalities find its top class (:func:`cross_modal_support`), and
      its columns of the episode evidence.  No query features (their
      channels mean different things per modality) and, unless
      ``modality_prior``, no per-modality bias.

    Input per query (``'joint'``): :func:`posterior_evidence` of every
    modality's posterior (detached: ASI never trains the branches) and,
    optionally, the query's temporally pooled features of every modality
    (detached by default) and, optionally, :func:`cross_modal_evidence` (do the
    modalities agree?) and, optionally, per-episode evidence
    (:func:`episode_evidence`: distance margins, the query's rank in its
    episode, the support set's separation), which the recogniser computes.
    Output: ``log pi (M, S)``, a log-softmax over modalities.  The last
    layer starts at zero, so an untrained net gives ``pi = 1/S``.

    Args:
        num_modalities (int): ``S``.
        topk (int): sorted probabilities per modality in the evidence.
        hidden_channels (int): MLP width (``'shared'``: 0 = linear).
        feature_channels (Sequence[int], optional): per-modality feature
            channels; given, pooled query features join the evidence.
        detach_features (bool): stop ASI's gradient into the features.
        cross_modal (bool): add :func:`cross_modal_evidence`.
        episode_evidence (Sequence[str]): groups of
            :func:`episode_evidence` the net reads (empty: none).
        normalize_evidence (bool): standardise the evidence with a
            non-affine ``BatchNorm1d`` (running statistics at test): the
            groups have different scales.
        scorer (str): ``'joint'`` or ``'shared'`` (see above).
        modality_prior (bool): ``'shared'`` only: a learnt per-modality
            bias added to the scores.
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
                 scorer: str = 'joint',
                 modality_prior: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if scorer not in SCORERS:
            raise ValueError(f'scorer must be one of {SCORERS}, got '
                             f'{scorer!r}')
        if scorer == 'shared' and feature_channels:
            raise ValueError("the 'shared' scorer reads no query features "
                             '(their channels differ per modality); drop '
                             'feature_channels')
        if modality_prior and scorer != 'shared':
            raise ValueError("modality_prior is a 'shared' scorer option; "
                             "the 'joint' MLP has its own biases")
        self.scorer = scorer
        self.num_modalities = num_modalities
        self.topk = topk
        self.feature_channels = (
            tuple(feature_channels) if feature_channels else None)
        if self.feature_channels and \
                len(self.feature_channels) != num_modalities:
            raise ValueError('feature_channels needs one entry per modality')
        self.detach_features = detach_features
        self.cross_modal = cross_modal
        self.episode_evidence = tuple(episode_evidence)
        episode_channels = episode_evidence_channels(self.episode_evidence,
                                                     num_modalities)
        if scorer == 'shared':
            # per modality: its posterior statistics, cross-modal support,
            # its columns of the episode evidence
            in_channels = topk + 2 + int(cross_modal) + (
                episode_channels // num_modalities)
            out_channels = 1
        else:
            in_channels = num_modalities * (topk + 2) + sum(
                self.feature_channels or ()) + episode_channels
            if cross_modal:
                in_channels += 2 * num_modalities * (num_modalities - 1)
            out_channels = num_modalities
        self.norm = (
            nn.BatchNorm1d(in_channels, affine=False)
            if normalize_evidence else nn.Identity())
        if hidden_channels > 0:
            self.mlp = nn.Sequential(
                nn.Linear(in_channels, hidden_channels), nn.ReLU(inplace=True),
                nn.Linear(hidden_channels, out_channels))
        elif scorer == 'shared':
            self.mlp = nn.Sequential(nn.Linear(in_channels, out_channels))
        else:
            raise ValueError("the 'joint' scorer needs hidden_channels > 0")
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.prior = nn.Parameter(
            torch.zeros(num_modalities)) if modality_prior else None

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
        log_probs = log_probs.detach()
        if self.scorer == 'shared':
            return self._shared_scores(log_probs, episode)
        evidence = [posterior_evidence(log_probs, self.topk)]
        if self.cross_modal:
            evidence.append(cross_modal_evidence(log_probs))
        if self.uses_features:
            if features is None:
                raise ValueError('this ASI net needs the query features')
            evidence += [
                f.detach() if self.detach_features else f for f in features
            ]
        if self.episode_evidence:
            evidence.append(self._episode(episode))
        evidence = self.norm(torch.cat(evidence, dim=1))
        return F.log_softmax(self.mlp(evidence), dim=-1)

    def _episode(self, episode: Optional[torch.Tensor]) -> torch.Tensor:
        if episode is None:
            raise ValueError('this ASI net reads episode evidence '
                             f'{self.episode_evidence}; none was given')
        return episode.detach()

    def _shared_scores(self, log_probs: torch.Tensor,
                       episode: Optional[torch.Tensor]) -> torch.Tensor:
        """``'shared'``: ``(M, S)`` ``log_softmax_s f(e_s)``."""
        queries, modalities = log_probs.shape[:2]
        evidence = [
            posterior_evidence(log_probs,
                               self.topk).view(queries, modalities, -1)
        ]
        if self.cross_modal:
            evidence.append(cross_modal_support(log_probs))
        if self.episode_evidence:
            # episode evidence: each statistic for every modality in turn
            evidence.append(
                self._episode(episode).view(queries, -1,
                                            modalities).transpose(1, 2))
        evidence = torch.cat(evidence, dim=-1)  # (M, S, F)
        scores = self.mlp(self.norm(evidence.flatten(0, 1))).view(
            queries, modalities)
        if self.prior is not None:
            scores = scores + self.prior
        return F.log_softmax(scores, dim=-1)
