"""ASI (Active Sample Inference) loss: the reliability net learns the
modality reliabilities that free energy assigns from the labels."""
import torch
import torch.nn.functional as F
from mmaction.models.losses import BaseWeightedLoss
from mmaction.registry import MODELS


def smoothed_preference(labels: torch.Tensor, num_classes: int,
                        label_smoothing: float) -> torch.Tensor:
    """``(M, N)`` preferred outcome: the label-smoothed ground truth
    ``(1 - eps) * onehot(y) + eps / N``."""
    onehot = F.one_hot(labels.long(), num_classes).float()
    return (1 - label_smoothing) * onehot + label_smoothing / num_classes


def free_energy(log_probs: torch.Tensor, preference: torch.Tensor,
                beta: float) -> torch.Tensor:
    """Expected free energy of each modality's posterior.

    ``G_m(q) = CE(preference, p_m(.|q)) + beta * H[p_m(.|q)]``: the
    posterior's cross-entropy to the preferred outcome (risk) plus its
    entropy (ambiguity).  Low ``G`` = a reliable modality for this query.

    Args:
        log_probs: ``(M, S, N)`` log-posteriors of ``M`` queries under
            ``S`` modalities over ``N`` classes.
        preference: ``(M, N)`` preferred outcome distribution.
        beta: weight of the entropy term.

    Returns:
        ``(M, S)`` free energies.
    """
    risk = -(preference.unsqueeze(1) * log_probs).sum(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return risk + beta * entropy


@MODELS.register_module()
class ASILoss(BaseWeightedLoss):
    """``KL(r || pi)`` between the free-energy reliability target ``r`` and
    the reliability net's prediction ``pi``, averaged over queries.

    The target ``r_m(q) = softmax_m(-G_m(q) / T)`` (:func:`free_energy`
    with the label-smoothed ground truth as preference) is computed without
    gradient, so the loss only trains the reliability net; it needs labels
    and exists only in meta-training.

    Args:
        beta (float): entropy weight in ``G``.
        label_smoothing (float): ``eps`` of the preference.
        temperature (float): ``T`` of the target softmax over modalities.
        loss_weight (float): ``lambda_ASI``.
    """

    def __init__(self,
                 beta: float = 1.0,
                 label_smoothing: float = 0.1,
                 temperature: float = 1.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight=loss_weight)
        if not 0 <= label_smoothing < 1:
            raise ValueError(f'label_smoothing must be in [0, 1), got '
                             f'{label_smoothing}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.beta = beta
        self.label_smoothing = label_smoothing
        self.temperature = temperature

    @torch.no_grad()
    def target(self, log_probs: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
        """``(M, S)`` target reliabilities ``r`` (no gradient).

        Args:
            log_probs: ``(M, S, N)`` modality log-posteriors.
            labels: ``(M,)`` query labels in ``0..N-1``.
        """
        pref = smoothed_preference(labels, log_probs.shape[-1],
                                   self.label_smoothing)
        energy = free_energy(log_probs, pref.to(log_probs), self.beta)
        return F.softmax(-energy / self.temperature, dim=-1)

    def _forward(self, log_reliability: torch.Tensor, log_probs: torch.Tensor,
                 labels: torch.Tensor) -> torch.Tensor:
        """
        Args:
            log_reliability: ``(M, S)`` predicted ``log pi``.
            log_probs: ``(M, S, N)`` modality log-posteriors.
            labels: ``(M,)`` query labels.

        Returns:
            The mean over queries of ``KL(r || pi)``.
        """
        target = self.target(log_probs, labels)
        return F.kl_div(log_reliability, target, reduction='batchmean')
