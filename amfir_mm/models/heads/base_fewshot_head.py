"""Base class of few-shot metric heads: query-to-class distances."""
from abc import ABCMeta, abstractmethod
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmaction.registry import MODELS
from mmengine.model import BaseModule

# the episode helpers lived here: importable from here as before
from ..utils.episodes import (episode_shape, gather_videos,
                              map_episode_batches, pooled_videos,
                              split_episode, split_episode_index)

__all__ = [
    'BaseFewShotHead', 'episode_shape', 'gather_videos', 'split_episode',
    'split_episode_index'
]


class BaseFewShotHead(BaseModule, metaclass=ABCMeta):
    """A few-shot metric head.

    Subclasses implement :meth:`distances`; this class turns them into
    logits ``-d / tau`` with a learnable temperature ``tau`` (so the
    posterior is ``p(c|q) = softmax_c(-d(q, c) / tau)``) and offers
    MMAction2's head API (:meth:`loss`, :meth:`predict`) over a batch of
    episodes, so a head is usable alone by :class:`FewShotRecognizer`.

    An optional ``adapter`` (e.g. :class:`TemporalAdapter`) maps each
    video's per-frame features ``(T, C)`` to ``(T, C)`` before the
    distances, in every path (:meth:`batch_logits`, :meth:`cache_videos`,
    :meth:`batch_relations`), so a frozen backbone's features can still be
    meta-trained.

    Args:
        temperature (float): initial ``tau`` (> 0).
        learn_temperature (bool): learn ``log tau``.
        loss_cls (dict): classification loss on the logits.
        adapter (dict, optional): module applied to ``(..., T, C)``
            per-video frame features.
    """

    def __init__(self,
                 temperature: float = 1.0,
                 learn_temperature: bool = True,
                 loss_cls: dict = dict(type='CrossEntropyLoss'),
                 adapter: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.adapter = MODELS.build(adapter) if adapter else None
        log_tau = torch.tensor(float(temperature)).log()
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_tau)
        else:
            self.register_buffer('log_temperature', log_tau)
        self.loss_cls = MODELS.build(loss_cls)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    @abstractmethod
    def distances(self, support: torch.Tensor, query: torch.Tensor,
                  num_ways: int, num_shots: int) -> torch.Tensor:
        """Query-to-class distances of one episode or a batch of them.

        Leading dims (e.g. ``E`` episodes of the same N, K and M) are
        optional: each episode gives what it gives alone.

        Args:
            support: ``(..., N * K, T, C)`` support videos, class-major.
            query: ``(..., M, T, C)`` query videos.
            num_ways: N. num_shots: K.

        Returns:
            ``(..., M, N)`` distances (smaller = closer).
        """

    def adapt(self, videos: torch.Tensor) -> torch.Tensor:
        """``(..., T, C)`` per-video frame features through the adapter
        (unchanged without one)."""
        return videos if self.adapter is None else self.adapter(videos)

    # -- cached meta-test: per-video work done once ----------------------
    def cache_videos(self, videos: torch.Tensor, **kwargs) -> Any:
        """What every episode of a cached meta-test needs of each video,
        computed once (:mod:`amfir_mm.engine.cached_episode_loops`): the
        adapted features' :meth:`cache_features`.

        Args:
            videos: ``(num_videos, T, C)`` per-frame features of every
                video the episodes draw from.
            kwargs: options of the head's :meth:`cache_features`.

        Returns:
            whatever :meth:`cached_distances` reads.
        """
        return self.cache_features(self.adapt(videos), **kwargs)

    def cache_features(self, videos: torch.Tensor) -> Any:
        """The per-video cache of adapted ``(num_videos, T, C)``
        features; here the features themselves.  Heads override this and
        :meth:`cached_distances` to move per-video (or per-pair) work out
        of the episode loop."""
        return videos

    def cached_distances(self, cache: Any, support_index: torch.Tensor,
                         query_index: torch.Tensor, num_ways: int,
                         num_shots: int) -> torch.Tensor:
        """:meth:`distances` of episodes given by video indices.

        Args:
            cache: :meth:`cache_videos` of all videos.
            support_index: ``(..., N * K)`` support video indices,
                class-major.
            query_index: ``(..., M)`` query video indices.
            num_ways: N. num_shots: K.

        Returns:
            ``(..., M, N)`` distances, equal to :meth:`distances` of the
            gathered features (up to float rounding).
        """
        return self.distances(
            gather_videos(cache, support_index),
            gather_videos(cache, query_index), num_ways, num_shots)

    def cached_video_means(self, cache: Any) -> torch.Tensor:
        """``(num_videos, C)`` frame means of the adapted features, read
        from :meth:`cache_videos` (:meth:`batch_relations`' cached path).

        Here the cache is the adapted ``(num_videos, T, C)`` features;
        heads whose :meth:`cache_features` stores something else override
        this (or raise where their cache keeps no such means).
        """
        if not (isinstance(cache, torch.Tensor) and cache.dim() == 3):
            raise TypeError(
                f'{type(self).__name__} caches {type(cache).__name__}, not '
                'the (num_videos, T, C) features: it must override '
                'cached_video_means to give the video embeddings')
        return cache.mean(1)

    def forward(self, support: torch.Tensor, query: torch.Tensor,
                num_ways: int, num_shots: int) -> torch.Tensor:
        """``(..., M, N)`` logits ``-d / tau`` (see :meth:`distances`)."""
        return -self.distances(support, query, num_ways,
                               num_shots) / self.temperature

    def batch_logits(self,
                     feats: Any,
                     meta: dict,
                     video_index: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """Logits ``(E, M, N)`` of ``E`` episodes of one shape.

        Args:
            feats: ``(E, V * T, C)`` per-frame features, or, with
                ``video_index``, :meth:`cache_videos` of all videos.
            meta: the episodes' ``num_ways``, ``num_shots``,
                ``num_queries``.
            video_index: ``(E, V)`` the episodes' video indices into the
                cache, support first.
        """
        if video_index is None:
            support, query = split_episode(feats, meta)
            return self(
                self.adapt(support), self.adapt(query), meta['num_ways'],
                meta['num_shots'])
        support, query = split_episode_index(video_index, meta)
        return -self.cached_distances(feats, support, query, meta['num_ways'],
                                      meta['num_shots']) / self.temperature

    def batch_relations(self,
                        feats: Any,
                        meta: dict,
                        video_index: Optional[torch.Tensor] = None
                        ) -> torch.Tensor:
        """Each query's relations to the ``N * K`` support videos of
        ``E`` episodes of one shape: ``cos(e(q), e(s_j))`` of the video
        embeddings ``e``, the frame means of the adapted features, whatever
        the head's metric (so they depend on the adapter, not on the
        head's own parameters).

        Args:
            feats: ``(E, V * T, C)`` per-frame features, or, with
                ``video_index``, :meth:`cache_videos` of all videos (read
                through :meth:`cached_video_means`).
            meta: the episodes' ``num_ways``, ``num_shots``,
                ``num_queries``.
            video_index: ``(E, V)`` the episodes' video indices into the
                cache, support first.

        Returns:
            ``(E, M, N * K)`` cosine similarities, supports class-major.
        """
        if video_index is None:
            support, query = (
                self.adapt(videos).mean(-2)
                for videos in split_episode(feats, meta))
        else:
            means = self.cached_video_means(feats)
            support, query = (
                pooled_videos(means, meta, part, video_index)
                for part in ('support', 'query'))
        return F.normalize(
            query, dim=-1) @ F.normalize(
                support, dim=-1).transpose(-1, -2)

    def episode_logits(
        self,
        feats: Any,
        data_samples: List,
        video_index: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Logits of every episode of a batch.

        Args:
            feats: ``(E, V * T, C)`` per-frame features, or, with
                ``video_index``, :meth:`cache_videos` of all videos.
            data_samples: ``E`` episode samples.
            video_index: ``(E, V)`` the episodes' video indices into the
                cache (the cached meta-test), support first; for episodes
                of several shapes, ``E`` tensors ``(V_e, )``.

        Returns:
            ``(E, M, N)`` from one batched :meth:`batch_logits` where all
            episodes share N, K and Q, else a list of ``E`` tensors
            ``(M_e, N_e)`` (:func:`map_episode_batches`); either way,
            iterating gives the episodes' logits.
        """
        return map_episode_batches(self.batch_logits, feats, data_samples,
                                   video_index)

    def loss(self, feats: torch.Tensor, data_samples: List,
             **kwargs) -> Dict[str, torch.Tensor]:
        """Mean classification loss and accuracy over the episodes."""
        logits = self.episode_logits(feats, data_samples)
        labels = [s.gt_label.to(feats.device) for s in data_samples]
        loss = torch.stack(
            [self.loss_cls(lg, y) for lg, y in zip(logits, labels)]).mean()
        acc = torch.cat([(lg.argmax(-1) == y).float()
                         for lg, y in zip(logits, labels)]).mean()
        return dict(loss_cls=loss, acc=acc.detach())

    def predict(self,
                feats: Any,
                data_samples: List,
                video_index: Optional[torch.Tensor] = None,
                **kwargs) -> List:
        """Set each episode's ``pred_score`` ``(M, N)`` posterior and
        ``pred_label``.

        Args:
            feats: ``(E, V * T, C)`` per-frame features, or, with
                ``video_index``, :meth:`cache_videos` of all videos.
            data_samples: ``E`` episode samples.
            video_index: ``(E, V)`` video indices into the cache (see
                :meth:`episode_logits`).
        """
        # per episode on purpose: each sample gets tensors of its own (a
        # slice of a batched result would keep, and pickle, the batch)
        for lg, sample in zip(
                self.episode_logits(feats, data_samples, video_index),
                data_samples):
            sample.set_pred_score(F.softmax(lg, dim=-1))
            sample.set_pred_label(lg.argmax(-1))
        return data_samples
