"""AMD (Active Mutual Distillation) loss: per query, each modality teaches
the others in proportion to its reliability."""
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

    Args:
        temperature (float): distillation temperature ``T``.
        gap (float): reliability gap ``delta`` in ``[0, 1)``.
        loss_weight (float): ``lambda_AMD``.
    """

    def __init__(self,
                 temperature: float = 4.0,
                 gap: float = 0.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight=loss_weight)
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if not 0 <= gap < 1:
            raise ValueError(f'gap must be in [0, 1), got {gap}')
        self.temperature = temperature
        self.gap = gap

    def _forward(self, logits: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``(M, S, N)`` logits of ``M`` queries under ``S``
                modalities.
            weights: ``(M, S)`` teacher weights ``pi``.

        Returns:
            The scalar loss.
        """
        log_p = F.log_softmax(logits / self.temperature, dim=-1)
        teacher = log_p.detach()
        num_modalities = logits.shape[1]
        loss = logits.new_zeros(logits.shape[0])
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
        return self.temperature**2 * loss.mean()
