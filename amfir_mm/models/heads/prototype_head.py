"""Prototypical-network head: distance of a query to each class mean."""
import torch
import torch.nn.functional as F
from mmaction.registry import MODELS

from .base_fewshot_head import BaseFewShotHead


@MODELS.register_module()
class PrototypeHead(BaseFewShotHead):
    """Prototype head (Snell et al., 2017) on temporally pooled features.

    A video's embedding is the mean of its ``T`` frame features; a class
    prototype is the mean of its ``K`` support embeddings.

    Args:
        metric (str): ``'cosine'`` (``d = 1 - cos``) or ``'euclidean'``
            (squared Euclidean distance divided by the channel count ``C``,
            so ``tau`` has the same scale for any backbone).
        temperature (float): initial ``tau``; defaults suit cosine (0.1).
    """

    def __init__(self, metric: str = 'cosine', temperature: float = 0.1,
                 **kwargs) -> None:
        if metric not in ('cosine', 'euclidean'):
            raise ValueError(f'metric must be cosine or euclidean, got '
                             f'{metric!r}')
        super().__init__(temperature=temperature, **kwargs)
        self.metric = metric

    def distances(self, support: torch.Tensor, query: torch.Tensor,
                  num_ways: int, num_shots: int) -> torch.Tensor:
        prototypes = support.mean(-2).unflatten(
            -2, (num_ways, num_shots)).mean(-2)  # (..., N, C)
        queries = query.mean(-2)  # (..., M, C)
        if self.metric == 'cosine':
            return 1 - F.normalize(queries, dim=-1) @ F.normalize(
                prototypes, dim=-1).transpose(-1, -2)
        return torch.cdist(queries, prototypes).pow(2) / queries.shape[-1]
