"""ASI (Active Sample Inference) loss: the reliability net learns the
modality reliabilities that free energy assigns from the labels."""
import torch
import torch.nn.functional as F
from mmaction.models.losses import BaseWeightedLoss
from mmaction.registry import MODELS


def smoothed_preference(labels: torch.Tensor,
                        num_classes: int,
                        label_smoothing: float,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(M, N)`` preferred outcome of ``dtype``: the label-smoothed ground
    truth ``(1 - eps) * onehot(y) + eps / N``."""
    onehot = F.one_hot(labels.long(), num_classes).to(dtype)
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


def disagreement_mask(log_probs: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
    """``(M,)`` bool: the queries on which the modalities' top-1
    predictions are not all right and not all wrong (with two modalities:
    exactly one is right), the queries where choosing a modality changes
    the outcome.

    Args:
        log_probs: ``(M, S, N)`` modality log-posteriors.
        labels: ``(M,)`` query labels in ``0..N-1``.
    """
    right = log_probs.argmax(-1) == labels.view(-1, 1).to(log_probs.device)
    return right.any(-1) & ~right.all(-1)


ASI_QUERIES = ('all', 'disagreement')


@MODELS.register_module()
class ASILoss(BaseWeightedLoss):
    """``KL(r || pi)`` between the free-energy reliability target ``r`` and
    the reliability net's prediction ``pi``, averaged over queries.

    The target ``r_m(q) = softmax_m(-G_m(q) / T)`` (:func:`free_energy`
    with the label-smoothed ground truth as preference) is computed without
    gradient, so the loss only trains the reliability net; it needs labels
    and exists only in meta-training.

    Which queries it averages over (``queries``):

    * ``'all'``: every query of the episode.
    * ``'disagreement'``: only the queries where some modality's top-1 is
      right and another's wrong (:func:`disagreement_mask`); 0 (with a
      gradient of 0) for an episode without one.  Where all modalities are
      right or all wrong, which one the fusion trusts rarely changes its
      prediction, but ``r`` still ranks them (by confidence): those
      queries teach ASI to prefer the confident modality rather than the
      right one.  This objective spends ASI's capacity on the decision its
      AUROC measures (beyond the paper: an option for ablation and
      selection).

    Args:
        beta (float): entropy weight in ``G``.
        label_smoothing (float): ``eps`` of the preference.
        temperature (float): ``T`` of the target softmax over modalities.
        queries (str): ``'all'`` or ``'disagreement'`` (see above).
        loss_weight (float): ``lambda_ASI``.
    """

    def __init__(self,
                 beta: float = 1.0,
                 label_smoothing: float = 0.1,
                 temperature: float = 1.0,
                 queries: str = 'all',
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight=loss_weight)
        if queries not in ASI_QUERIES:
            raise ValueError(f'queries must be one of {ASI_QUERIES}, got '
                             f'{queries!r}')
        self.queries = queries
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
                                   self.label_smoothing, log_probs.dtype)
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
            The mean over the chosen queries of ``KL(r || pi)``.
        """
        target = self.target(log_probs, labels)
        if self.queries == 'all':
            return F.kl_div(log_reliability, target, reduction='batchmean')
        per_query = F.kl_div(log_reliability, target, reduction='none').sum(-1)
        mask = disagreement_mask(log_probs, labels).to(per_query.dtype)
        return (per_query * mask).sum() / mask.sum().clamp_min(1)
