"""TRX head (Perrett et al., CVPR 2021): temporal-relational cross-transformer.
"""
import math
from itertools import combinations
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmaction.registry import MODELS

from .base_fewshot_head import BaseFewShotHead, gather_videos

KeysValues = List[Tuple[torch.Tensor, torch.Tensor]]


def sinusoidal_encoding(length: int,
                        channels: int,
                        device=None) -> torch.Tensor:
    """``(length, channels)`` sinusoidal positional encoding (Vaswani et
    al.): ``sin`` on even and ``cos`` on odd channels."""
    position = torch.arange(
        length, dtype=torch.float32, device=device).unsqueeze(1)
    div = torch.exp(
        torch.arange(0, channels, 2, dtype=torch.float32, device=device) *
        (-math.log(10000.0) / channels))
    enc = torch.zeros(length, channels, device=device)
    enc[:, 0::2] = torch.sin(position * div)
    enc[:, 1::2] = torch.cos(position * div)[:, :channels // 2]
    return enc


@MODELS.register_module()
class TRXHead(BaseFewShotHead):
    """Temporal-Relational CrossTransformer head.

    For each cardinality ``c`` (2 = frame pairs, 3 = triples): a scaled
    sinusoidal positional encoding is added to the frame features, every
    ordered ``c``-tuple of the ``T`` frames becomes one tuple feature by
    concatenation ``(P, c * C)`` (``P = binom(T, c)``), keys are
    ``LayerNorm(W_k x)`` and values ``W_v x``.  Each query tuple attends
    (softmax over all ``K * P`` support tuples of a class) to build a
    query-specific class prototype from the support values; the distance is
    the squared Euclidean distance between the query's values and its
    prototype, summed over channels and tuples and divided by ``P``.
    Distances are averaged over the cardinalities.

    Args:
        in_channels (int): frame feature channels ``C`` (2048 for
            ResNet-50, 512 for ResNet-18).
        out_channels (int): key / value channels (TRX: 1152).
        cardinalities (Sequence[int]): tuple sizes (TRX: ``(2, 3)``).
        dropout (float): dropout after the positional encoding.
        pe_scale (float): scale of the positional encoding (TRX: 0.1).
        temperature (float): initial ``tau``; TRX uses the raw distances
            as logits (``tau = 1``).
        cache_max_mb (float): memory for the cached meta-test's per-video
            tuple keys and values (:meth:`cache_videos`; ``2 * P * D``
            values a video per cardinality: 0.74 MiB for 8 frames, pairs and
            triples, ``D = 1152``); above it, each episode projects its
            own videos' tuples.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 1152,
                 cardinalities: Sequence[int] = (2, 3),
                 dropout: float = 0.1,
                 pe_scale: float = 0.1,
                 temperature: float = 1.0,
                 cache_max_mb: float = 1024,
                 **kwargs) -> None:
        super().__init__(temperature=temperature, **kwargs)
        if not cardinalities or min(cardinalities) < 1:
            raise ValueError(f'bad cardinalities {cardinalities}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.cardinalities = tuple(cardinalities)
        self.pe_scale = pe_scale
        self.cache_max_mb = cache_max_mb
        self.dropout = nn.Dropout(dropout)
        self.key_proj = nn.ModuleList(
            nn.Linear(in_channels * c, out_channels)
            for c in self.cardinalities)
        self.value_proj = nn.ModuleList(
            nn.Linear(in_channels * c, out_channels)
            for c in self.cardinalities)
        self.key_norm = nn.ModuleList(
            nn.LayerNorm(out_channels) for _ in self.cardinalities)

    @staticmethod
    def tuples(num_frames: int, cardinality: int, device=None) -> torch.Tensor:
        """``(P, c)`` frame indices of all ordered ``c``-tuples."""
        if cardinality > num_frames:
            raise ValueError(f'cardinality {cardinality} needs at least '
                             f'{cardinality} frames, got {num_frames}')
        return torch.tensor(
            list(combinations(range(num_frames), cardinality)),
            dtype=torch.long,
            device=device)

    def _tuple_features(self, x: torch.Tensor,
                        index: torch.Tensor) -> torch.Tensor:
        """``(..., V, T, C)`` -> ``(..., V, P, c * C)`` concatenated tuples.
        """
        return x[..., index, :].flatten(-2)

    def tuple_keys_values(self, videos: torch.Tensor) -> KeysValues:
        """Each video's tuple keys and values, per cardinality.

        Args:
            videos: ``(..., V, T, C)`` per-frame features.

        Returns:
            list: per cardinality, ``key`` and ``value`` ``(..., V, P, D)``.
        """
        num_frames, channels = videos.shape[-2:]
        if channels != self.in_channels:
            raise ValueError(f'TRXHead(in_channels={self.in_channels}) got '
                             f'{channels}-channel features')
        enc = self.pe_scale * sinusoidal_encoding(num_frames, channels,
                                                  videos.device)
        videos = self.dropout(videos + enc)
        keys_values = []
        for i, card in enumerate(self.cardinalities):
            index = self.tuples(num_frames, card, videos.device)
            tup = self._tuple_features(videos, index)  # (..., V, P, cC)
            keys_values.append((self.key_norm[i](self.key_proj[i](tup)),
                                self.value_proj[i](tup)))
        return keys_values

    def tuple_distances(self, support: KeysValues, query: KeysValues,
                        num_ways: int, num_shots: int) -> torch.Tensor:
        """Distances from :meth:`tuple_keys_values` of the support
        ``(..., N * K, P, D)`` (class-major) and query ``(..., M, P, D)``
        videos -> ``(..., M, N)``."""
        scale = math.sqrt(self.out_channels)
        dists = []
        for (s_key, s_val), (q_key, q_val) in zip(support, query):
            num_tuples = q_key.shape[-2]
            # all K * P support tuples of a class: (..., N, K * P, D)
            s_key = s_key.unflatten(-3, (num_ways, num_shots)).flatten(-3, -2)
            s_val = s_val.unflatten(-3, (num_ways, num_shots)).flatten(-3, -2)
            attn = torch.einsum('...mpd,...nqd->...mnpq', q_key, s_key) / scale
            prototypes = torch.einsum('...mnpq,...nqd->...mnpd',
                                      attn.softmax(-1),
                                      s_val)  # (..., M, N, P, D)
            # prototypes - query in place and squared norms in one
            # reduction: no further (..., M, N, P, D) tensor (the einsum's
            # backward does not need its output)
            sq_norms = torch.linalg.vector_norm(
                prototypes.sub_(q_val.unsqueeze(-3)), dim=-1).square()
            dists.append(sq_norms.sum(-1) / num_tuples)
        return torch.stack(dists).mean(0)

    def distances(self, support: torch.Tensor, query: torch.Tensor,
                  num_ways: int, num_shots: int) -> torch.Tensor:
        return self.tuple_distances(
            self.tuple_keys_values(support), self.tuple_keys_values(query),
            num_ways, num_shots)

    def cache_features(self, videos: torch.Tensor, batch_size: int = 64):
        """Per-video work of the cached meta-test: every video's tuple keys
        and values (:meth:`tuple_keys_values`, ``batch_size`` videos at a
        time) when they fit ``cache_max_mb``, else the features.

        Args:
            videos: ``(num_videos, T, C)`` per-frame features.

        Returns:
            dict: ``keys_values`` (per cardinality, ``(num_videos, P, D)``
            keys and values) or ``frames`` (the features).
        """
        num_videos, num_frames = videos.shape[:2]
        values = 2 * num_videos * self.out_channels * sum(
            math.comb(num_frames, c) for c in self.cardinalities)
        if values * videos.element_size() / 2**20 > self.cache_max_mb:
            return dict(frames=videos)
        parts = [
            self.tuple_keys_values(videos[i:i + batch_size])
            for i in range(0, num_videos, batch_size)
        ]
        return dict(keys_values=[
            tuple(torch.cat([p[c][j] for p in parts]) for j in range(2))
            for c in range(len(self.cardinalities))
        ])

    def cached_video_means(self, cache: dict) -> torch.Tensor:
        """The frame means of a ``frames`` cache; a ``keys_values`` cache
        keeps no video embeddings."""
        if 'frames' not in cache:
            raise ValueError(
                'a TRXHead cache of tuple keys and values holds no video '
                'embeddings: relations need the gathered episode features '
                'or a frames cache (cache_max_mb=0)')
        return cache['frames'].mean(1)

    def cached_distances(self, cache: dict, support_index: torch.Tensor,
                         query_index: torch.Tensor, num_ways: int,
                         num_shots: int) -> torch.Tensor:
        if 'frames' in cache:
            return super().cached_distances(cache['frames'], support_index,
                                            query_index, num_ways, num_shots)

        def gather(index):
            return [(gather_videos(k, index), gather_videos(v, index))
                    for k, v in cache['keys_values']]

        return self.tuple_distances(
            gather(support_index), gather(query_index), num_ways, num_shots)
