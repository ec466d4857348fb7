"""AMI (Adaptive Multimodal Inference): reliability-weighted fusion of the
modality posteriors."""
import torch
import torch.nn.functional as F

FUSION_MODES = ('log_linear', 'mixture')


def fuse_posteriors(log_probs: torch.Tensor,
                    weights: torch.Tensor,
                    mode: str = 'log_linear') -> torch.Tensor:
    """Fuse ``S`` modality posteriors with per-query weights ``pi``.

    * ``'log_linear'``: ``p(c|q) ∝ prod_m p_m(c|q) ** pi_m(q)``, i.e.
      ``softmax_c(sum_m pi_m log p_m)`` (a product of experts);
    * ``'mixture'``: ``p(c|q) = sum_m pi_m(q) p_m(c|q)``.

    Args:
        log_probs: ``(M, S, N)`` modality log-posteriors.
        weights: ``(M, S)`` non-negative weights summing to 1 per query.
        mode: ``'log_linear'`` or ``'mixture'``.

    Returns:
        ``(M, N)`` fused log-posterior (normalised: it is its own
        ``log_softmax``, so a cross-entropy on it is the NLL).
    """
    if mode == 'log_linear':
        return F.log_softmax(
            (weights.unsqueeze(-1) * log_probs).sum(1), dim=-1)
    if mode == 'mixture':
        # clamp: a zero weight gives a finite log (and no NaN gradient)
        log_w = weights.clamp_min(1e-30).log().unsqueeze(-1)
        return torch.logsumexp(log_w + log_probs, dim=1)
    raise ValueError(f'fusion mode must be one of {FUSION_MODES}, got '
                     f'{mode!r}')


def sharpen_reliability(log_pi: torch.Tensor, beta: float) -> torch.Tensor:
    """AMI's test-time weights ``pi_m ** beta / sum_s pi_s ** beta``.

    Args:
        log_pi: ``(..., S)`` log-reliabilities of ``S`` modalities.
        beta: sharpness ``>= 0`` (1: ``pi`` itself; 0: uniform).

    Returns:
        ``(..., S)`` weights summing to 1 over the last dimension.
    """
    return F.softmax(beta * log_pi, dim=-1)
