"""Per-episode, label-free evidence on which modality to trust.

ASI's posterior statistics (:func:`posterior_evidence`) read one query's
posterior alone.  These read the episode around it: how far apart the
query's nearest classes are in the head's own distance (before the
temperature), how the query ranks against the episode's other queries, how
well the support set separates its classes in each modality.  All of it is
computed without labels of the queries, so it exists at meta-test.

Shapes: ``E`` episodes, ``M`` queries per episode, ``S`` modalities, ``N``
classes (ways), ``K`` shots, ``C`` channels.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

EPISODE_EVIDENCE = dict(
    distance_margin=1,
    episode_rank=1,
    prototype_spread=1,
    support_consistency=2)


def episode_evidence_channels(groups: Sequence[str],
                              num_modalities: int) -> int:
    """Width of :func:`episode_evidence` for ``groups``."""
    unknown = set(groups) - set(EPISODE_EVIDENCE)
    if unknown:
        raise ValueError(f'unknown episode evidence {sorted(unknown)}; '
                         f'choose from {sorted(EPISODE_EVIDENCE)}')
    return num_modalities * sum(EPISODE_EVIDENCE[g] for g in groups)


def _top2_gap(x: torch.Tensor) -> torch.Tensor:
    """``x_(1) - x_(2)`` over the last dim (0 when it has one entry)."""
    if x.shape[-1] < 2:
        return torch.zeros_like(x[..., 0])
    top = x.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def _rank01(x: torch.Tensor) -> torch.Tensor:
    """Rank of each entry of ``(E, M)`` within its row, scaled to ``[0,
    1]`` (0 = smallest; ``1/2`` for a row of one)."""
    count = x.shape[1]
    if count == 1:
        return torch.full_like(x, 0.5)
    return x.argsort(1).argsort(1).to(x.dtype) / (count - 1)


def support_statistics(support: torch.Tensor, num_ways: int,
                       num_shots: int) -> torch.Tensor:
    """How well one modality's support set separates its classes.

    On L2-normalised support embeddings, cosine distance ``1 - cos``:

    * ``prototype_spread``: the mean distance between the ``N`` class
      prototypes (class means);
    * ``loo_accuracy``: the share of supports whose nearest prototype,
      their own class's computed *without them*, is their class (0 at
      ``K = 1``, where no such prototype exists);
    * ``within_between``: mean distance of a support to its own
      leave-one-out prototype over its mean distance to the other
      prototypes (0 at ``K = 1``).

    Args:
        support: ``(E, N * K, C)`` support embeddings, class-major.

    Returns:
        ``(E, 3)``: spread, leave-one-out accuracy, within/between ratio.
    """
    unit = F.normalize(support, dim=-1)
    shots = unit.unflatten(1, (num_ways, num_shots))  # (E, N, K, C)
    sums = shots.sum(2)  # (E, N, C)
    protos = F.normalize(sums / num_shots, dim=-1)
    dist = 1 - protos @ protos.transpose(1, 2)  # (E, N, N)
    if num_ways > 1:
        off = ~torch.eye(num_ways, dtype=torch.bool, device=dist.device)
        spread = dist[:, off].mean(1)
    else:
        spread = dist.new_zeros(dist.shape[0])
    if num_shots < 2:
        zero = spread.new_zeros(spread.shape)
        return torch.stack([spread, zero, zero], 1)
    # each support against every prototype; its own class's without it
    to_protos = 1 - unit @ protos.transpose(1, 2)  # (E, N * K, N)
    own = torch.arange(
        num_ways, device=unit.device).repeat_interleave(num_shots)
    loo = F.normalize(
        (sums.repeat_interleave(num_shots, 1) - unit) / (num_shots - 1),
        dim=-1)
    own_dist = 1 - (unit * loo).sum(-1)  # (E, N * K)
    to_protos = to_protos.clone()
    to_protos[:, torch.arange(len(own)), own] = own_dist
    loo_acc = (to_protos.argmin(-1) == own).to(unit.dtype).mean(1)
    other = torch.ones_like(to_protos, dtype=torch.bool)
    other[:, torch.arange(len(own)), own] = False
    between = to_protos[other].view(*to_protos.shape[:2], -1).mean(-1)
    ratio = (own_dist / between.clamp_min(1e-6)).mean(1)
    return torch.stack([spread, loo_acc, ratio], 1)


def episode_evidence(logits: torch.Tensor,
                     temperatures: torch.Tensor,
                     groups: Sequence[str],
                     supports: Optional[Sequence[torch.Tensor]] = None,
                     num_ways: int = 0,
                     num_shots: int = 0) -> torch.Tensor:
    """Label-free per-query evidence from the query's episode.

    Per modality, by group (in ``groups`` order; inside a group, each
    statistic for every modality in turn):

    * ``distance_margin``: ``d_(2) - d_(1)``, the gap between the query's
      two nearest classes in the head's distance (``tau * (l_(1) -
      l_(2))`` of the logits ``l = -d / tau``): the margin before the
      temperature, comparable across modalities with different ``tau``;
    * ``episode_rank``: that margin's rank among the episode's ``M``
      queries, in ``[0, 1]``;
    * ``prototype_spread``: :func:`support_statistics`' spread (per
      episode, the same for its queries);
    * ``support_consistency``: its leave-one-out accuracy and
      within/between ratio (0 at ``K = 1``).

    Args:
        logits: ``(E, M, S, N)`` head logits.
        temperatures: ``(S,)`` the heads' ``tau``.
        groups: evidence groups (keys of ``EPISODE_EVIDENCE``).
        supports: ``S`` tensors ``(E, N * K, C_s)`` support embeddings
            (needed by the support groups).
        num_ways, num_shots: ``N`` and ``K`` (support groups).

    Returns:
        ``(E, M, F)`` with ``F = episode_evidence_channels(groups, S)``.
    """
    episodes, queries, modalities = logits.shape[:3]
    margin = _top2_gap(logits) * temperatures.to(logits)  # (E, M, S)
    stats = None
    if {'prototype_spread', 'support_consistency'} & set(groups):
        if supports is None or len(supports) != modalities:
            raise ValueError('the support evidence needs one support '
                             'embedding tensor per modality')
        stats = torch.stack([
            support_statistics(s.to(logits), num_ways, num_shots)
            for s in supports
        ], 1)  # (E, S, 3)
    parts = []
    for group in groups:
        if group == 'distance_margin':
            parts.append(margin)
        elif group == 'episode_rank':
            parts.append(
                torch.stack(
                    [_rank01(margin[..., s]) for s in range(modalities)], -1))
        elif group == 'prototype_spread':
            parts.append(stats[:, None, :, 0].expand(-1, queries, -1))
        elif group == 'support_consistency':
            parts.append(stats[:, None, :,
                               1:].expand(-1, queries, -1,
                                          -1).transpose(2, 3).flatten(2))
        else:
            raise ValueError(f'unknown episode evidence {group!r}')
    if not parts:
        return logits.new_zeros(episodes, queries, 0)
    return torch.cat(parts, -1)
