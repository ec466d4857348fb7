"""Prototypical-network head: distance of a query to each class mean."""
import torch
import torch.nn.functional as F
from mmaction.registry import MODELS

from .base_fewshot_head import BaseFewShotHead, gather_videos


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

    def __init__(self,
                 metric: str = 'cosine',
                 temperature: float = 0.1,
                 **kwargs) -> None:
        if metric not in ('cosine', 'euclidean'):
            raise ValueError(f'metric must be cosine or euclidean, got '
                             f'{metric!r}')
        super().__init__(temperature=temperature, **kwargs)
        self.metric = metric

    def distances(self, support: torch.Tensor, query: torch.Tensor,
                  num_ways: int, num_shots: int) -> torch.Tensor:
        return self.embedding_distances(
            support.mean(-2), query.mean(-2), num_ways, num_shots)

    def embedding_distances(self, support: torch.Tensor, query: torch.Tensor,
                            num_ways: int, num_shots: int) -> torch.Tensor:
        """Distances from video embeddings (frame means).

        Args:
            support: ``(..., N * K, C)``, class-major.
            query: ``(..., M, C)``.

        Returns:
            ``(..., M, N)``.
        """
        prototypes = support.unflatten(-2, (num_ways, num_shots)).mean(-2)
        if self.metric == 'cosine':
            return 1 - F.normalize(
                query, dim=-1) @ F.normalize(
                    prototypes, dim=-1).transpose(-1, -2)
        return torch.cdist(query, prototypes).pow(2) / query.shape[-1]

    def cache_features(self, videos: torch.Tensor) -> torch.Tensor:
        """``(num_videos, T, C)`` -> ``(num_videos, C)`` video embeddings
        (all this head reads of a video)."""
        return videos.mean(1)

    def cached_distances(self, cache: torch.Tensor,
                         support_index: torch.Tensor,
                         query_index: torch.Tensor, num_ways: int,
                         num_shots: int) -> torch.Tensor:
        return self.embedding_distances(
            gather_videos(cache, support_index),
            gather_videos(cache, query_index), num_ways, num_shots)

    def cached_video_means(self, cache: torch.Tensor) -> torch.Tensor:
        """The cache is the video embeddings themselves."""
        return cache
