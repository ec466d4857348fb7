"""AMD (Active Mutual Distillation) loss: per query, each modality teaches
the others in proportion to its reliability."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmaction.models.losses import BaseWeightedLoss
from mmaction.registry import MODELS


@MODELS.register_module()
class AMDLoss(BaseWeightedLoss):
    """Reliability-weighted mutual distillation between modalities.

    ``L = mean_q sum_m sum_{m' != m} pi_m(q) * T^2 *
    KL(p_m(.|q; T) || p_m'(.|q; T))`` with ``p(.; T) = softmax(logits / T)``.
    The teacher ``p_m`` is detached: modality ``m'`` learns from ``m``, never
    the reverse through the same term.  The weights ``pi`` are used as
    given; the recogniser passes them detached, so AMD does not train the
    reliability net.  Which weights are passed is the recogniser's choice
    (``amd_weights``): the predicted ``pi``, the labelled free-energy
    target ``r`` (meta-training only) or ``1/2`` (symmetric mutual
    learning).

    With ``gap = delta > 0`` a direction ``m -> m'`` is distilled only for
    the queries where the teacher is clearly the more reliable one,
    ``pi_m(q) - pi_m'(q) > delta`` (AMFAR groups queries by this gap);
    ``delta = 0`` distils every query in both directions.

    Relation knowledge (``relation_weight = lambda_rel > 0``): each query's
    similarities ``s_m(q, j)`` to the episode's ``N * K`` support videos
    ``j`` (the recogniser passes the cosine of the adapted, frame-averaged
    video embeddings, :meth:`BaseFewShotHead.batch_relations`) as a
    distribution ``rho_m(.|q) = softmax_j(s_m(q, j) / T_rel)`` are distilled
    the same way, with the same weights and ``gap`` rule::

        L = mean_q sum_m sum_{m' != m} w_{m->m'}(q) * (
                T^2 * KL(p_m || p_m') +
                lambda_rel * T_rel^2 * KL(rho_m || rho_m'))

    with ``w_{m->m'}(q) = pi_m(q) * [pi_m(q) - pi_m'(q) > delta]`` (``=
    pi_m(q)`` for ``delta = 0``) and the teacher ``rho_m`` detached.  The
    default ``lambda_rel = 0`` is the posterior term alone.  Turn it on
    with e.g. ``loss_amd=dict(type='AMDLoss', relation_weight=1.0)``.

    Args:
        temperature (float): distillation temperature ``T``.
        gap (float): reliability gap ``delta`` in ``[0, 1)``.
        relation_weight (float): ``lambda_rel >= 0``, weight of the
            relation term.
        relation_temperature (float): ``T_rel > 0`` of the relation
            distributions (cosines lie in ``[-1, 1]``, hence the default
            0.1).
        loss_weight (float): ``lambda_AMD``.
    """

    def __init__(self,
                 temperature: float = 4.0,
                 gap: float = 0.0,
                 relation_weight: float = 0.0,
                 relation_temperature: float = 0.1,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight=loss_weight)
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if not 0 <= gap < 1:
            raise ValueError(f'gap must be in [0, 1), got {gap}')
        if relation_weight < 0:
            raise ValueError(
                f'relation_weight must be >= 0, got {relation_weight}')
        if relation_temperature <= 0:
            raise ValueError(f'relation_temperature must be > 0, got '
                             f'{relation_temperature}')
        self.temperature = temperature
        self.gap = gap
        self.relation_weight = relation_weight
        self.relation_temperature = relation_temperature

    def _forward(self,
                 logits: torch.Tensor,
                 weights: torch.Tensor,
                 relations: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            logits: ``(M, S, N)`` logits of ``M`` queries under ``S``
                modalities.
            weights: ``(M, S)`` teacher weights ``pi``.
            relations: ``(M, S, N * K)`` similarities of each query to the
                support videos under each modality; read only when
                ``relation_weight > 0`` (then required).

        Returns:
            The scalar loss.
        """
        loss = self.distil(logits, weights, self.temperature)
        if self.relation_weight > 0:
            if relations is None:
                raise ValueError(
                    f'AMDLoss(relation_weight={self.relation_weight}) '
                    'needs the (M, S, N * K) query-to-support relations')
            if relations.shape[:2] != logits.shape[:2]:
                raise ValueError(
                    f'relations {tuple(relations.shape)} do not match the '
                    f'(M, S) = {tuple(logits.shape[:2])} of the logits')
            loss = loss + self.relation_weight * self.distil(
                relations, weights, self.relation_temperature)
        return loss

    def distil(self, scores: torch.Tensor, weights: torch.Tensor,
               temperature: float) -> torch.Tensor:
        """``mean_q sum_{m != m'} w_{m->m'}(q) * T^2 * KL(softmax(x_m / T)
        || softmax(x_m' / T))`` of ``(M, S, D)`` scores ``x``, the teacher
        detached, ``w`` from the ``(M, S)`` weights and the gap rule."""
        log_p = F.log_softmax(scores / temperature, dim=-1)
        teacher = log_p.detach()
        num_modalities = scores.shape[1]
        loss = scores.new_zeros(scores.shape[0])
        for m in range(num_modalities):
            for student in range(num_modalities):
                if student == m:
                    continue
                kl = (teacher[:, m].exp() *
                      (teacher[:, m] - log_p[:, student])).sum(-1)
                weight = weights[:, m]
                if self.gap > 0:
                    weight = weight * (
                        weights[:, m] - weights[:, student] > self.gap)
                loss = loss + weight * kl
        return temperature**2 * loss.mean()
