"""OTAM head (Cao et al., CVPR 2020): ordered temporal alignment distance."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmaction.registry import MODELS

from .base_fewshot_head import BaseFewShotHead, gather_videos


def otam_cumulative_distance(dists: torch.Tensor,
                             gamma: torch.Tensor) -> torch.Tensor:
    """OTAM's cumulative alignment distance in one direction.

    ``dists`` is padded with a zero column before the first and after the
    last frame of the second sequence (so the alignment may start and end
    anywhere), then accumulated with OTAM's recursion, where ``min`` is the
    smooth minimum ``min_i v_i ~ -gamma * log(sum_i exp(-v_i / gamma))``
    (exact as ``gamma -> 0``)::

        g(0, m) = D(0, m) + g(0, m - 1)                      (first row)
        g(l, 0) = 0                                          (start pad)
        g(l, 1) = D(l, 1) + min(g(l-1, 0), g(l-1, 1), g(l, 0))
                                                       (first frame column)
        g(l, m) = D(l, m) + min(g(l-1, m-1), g(l, m-1))      (frames, m > 1)
        g(l, T_s+1) = min(g(l-1, T_s), g(l, T_s), g(l-1, T_s+1))  (end pad)

    i.e. diagonal and horizontal moves everywhere, vertical moves in the
    two (zero-cost) padding columns and into the first frame column.  This
    is the reference recursion (``OTAM_cum_dist`` of the TRX / CLIP-FSAR
    code, whose first non-zero column includes the vertical move from the
    row above).

    Args:
        dists: ``(..., L, T_s)`` frame-to-frame distances.
        gamma: smoothing (a scalar tensor, > 0).

    Returns:
        ``(...)`` the cumulative distance ``g(T_q - 1, S + 1)``.
    """
    # Computed on h = -g / gamma, where the smooth minimum is a logaddexp,
    # one column (all T_q rows) at a time: the frame cells of column m need
    # column m - 1 only.  Layout (T_s, T_q, ...), so that a column and its row
    # shifts are contiguous; no in-place writes, so autograd sees a plain
    # graph.
    neg_dists = (-dists / gamma).permute(-1, -2, *range(dists.dim() - 2))
    # The first frame column runs down its rows: with the zero start pad,
    # h(l, 1) = -D(l, 1) / gamma + log(2 + exp(h(l-1, 1))) for l > 0.
    neg_dists = neg_dists.contiguous()
    first = [neg_dists[0, 0]]
    for row in neg_dists[0, 1:]:
        first.append(
            row +
            torch.logaddexp(first[-1].new_tensor(math.log(2)), first[-1]))
    col = torch.stack(first)
    for frames in neg_dists[1:]:
        col = torch.cat([
            col[:1] + frames[:1],
            frames[1:] + torch.logaddexp(col[:-1], col[1:])
        ])
    # The end pad's vertical recursion, unrolled: with E = exp(h),
    # E(l, T_s+1) = E(l-1, T_s) + E(l, T_s) + E(l-1, T_s+1) and
    # E(0, T_s+1) = E(0, T_s), so
    # E(T_q-1, T_s+1) = 2 sum_{l < T_q-1} E(l, T_s) + E(T_q-1, T_s).
    log_count = col.new_full(col.shape[:1] + (1, ) * (col.dim() - 1),
                             math.log(2))
    log_count[-1] = 0
    return -gamma * torch.logsumexp(col + log_count, dim=0)


@MODELS.register_module()
class OTAMHead(BaseFewShotHead):
    """Ordered Temporal Alignment Module head.

    The frame-to-frame distance of a query ``(T, C)`` and a support video
    ``(T, C)`` is ``1 - cos``; their video distance is the OTAM cumulative
    alignment distance (:func:`otam_cumulative_distance`), averaged over the
    query->support and support->query directions when ``symmetric``.  A
    class's distance is the mean over its ``K`` shots.  (The reference code
    sums the two directions; the mean is half of that, a factor the learned
    temperature ``tau`` absorbs: the logits ``-d / tau`` are the same with
    ``tau`` halved.)

    Args:
        gamma (float): smoothing of the soft minimum (OTAM: 0.1).
        learn_gamma (bool): learn ``log gamma``.
        symmetric (bool): average both alignment directions.
        temperature (float): initial ``tau`` of the logits ``-d / tau``.
        cache_max_mb (float): memory for the cached meta-test's table of
            frame distances of video pairs (:meth:`cache_videos`),
            ``(num_videos * T) ** 2`` values: 50 videos of 8 frames take
            0.6 MiB, 2,048 take 1 GiB.  Above it, each episode computes
            the frame distances of its own pairs.
    """

    def __init__(self,
                 gamma: float = 0.1,
                 learn_gamma: bool = False,
                 symmetric: bool = True,
                 temperature: float = 1.0,
                 cache_max_mb: float = 1024,
                 **kwargs) -> None:
        if gamma <= 0:
            raise ValueError(f'gamma must be > 0, got {gamma}')
        super().__init__(temperature=temperature, **kwargs)
        log_gamma = torch.tensor(float(gamma)).log()
        if learn_gamma:
            self.log_gamma = nn.Parameter(log_gamma)
        else:
            self.register_buffer('log_gamma', log_gamma)
        self.symmetric = symmetric
        self.cache_max_mb = cache_max_mb

    @property
    def gamma(self) -> torch.Tensor:
        return self.log_gamma.exp()

    @staticmethod
    def frame_distances(query: torch.Tensor,
                        support: torch.Tensor) -> torch.Tensor:
        """``1 - cos`` of every query and support frame.

        Args:
            query: ``(..., M, T, C)`` unit-norm frame features.
            support: ``(..., N * K, T, C)`` unit-norm frame features.

        Returns:
            ``(..., M, N * K, T, T)``: query frames x support frames.
        """
        return 1 - torch.einsum('...mic,...sjc->...msij', query, support)

    def alignment_distances(self, frame_dists: torch.Tensor, num_ways: int,
                            num_shots: int) -> torch.Tensor:
        """``(..., M, N * K, T, T)`` frame distances -> ``(..., M, N)``
        class distances (the OTAM distance, mean over the ``K`` shots)."""
        if self.symmetric:  # both directions in one pass (T x T: square)
            frame_dists = torch.stack(
                [frame_dists, frame_dists.transpose(-1, -2)])
        dist = otam_cumulative_distance(frame_dists, self.gamma)
        if self.symmetric:
            dist = dist.mean(0)
        return dist.unflatten(-1, (num_ways, num_shots)).mean(-1)

    def distances(self, support: torch.Tensor, query: torch.Tensor,
                  num_ways: int, num_shots: int) -> torch.Tensor:
        return self.alignment_distances(
            self.frame_distances(
                F.normalize(query, dim=-1), F.normalize(support, dim=-1)),
            num_ways, num_shots)

    def cache_features(self, videos: torch.Tensor) -> dict:
        """Per-video work of the cached meta-test.

        Args:
            videos: ``(num_videos, T, C)`` per-frame features.

        Returns:
            dict: ``unit_frames`` ``(num_videos, T, C)``, the
            unit-normalised features, ``pooled`` ``(num_videos, C)``, their
            frame means before normalising (:meth:`cached_video_means`),
            and, when it fits ``cache_max_mb``, an empty table of the frame
            distances of every ordered video pair, ``pair_table``
            ``(num_videos ** 2, T, T)`` (row ``q * num_videos + s``), with
            ``pair_known`` ``(num_videos ** 2, )`` marking the rows filled.
            :meth:`cached_distances` fills a row the first time an episode
            needs it, so each pair is computed once, and only the pairs the
            episodes use.
        """
        unit = F.normalize(videos, dim=-1)
        num_videos, frames = videos.shape[:2]
        cache = dict(unit_frames=unit, pooled=videos.mean(1))
        table_mb = (num_videos * frames)**2 * unit.element_size() / 2**20
        if table_mb <= self.cache_max_mb:
            cache['pair_table'] = unit.new_empty(num_videos**2, frames, frames)
            cache['pair_known'] = torch.zeros(
                num_videos**2, dtype=torch.bool, device=unit.device)
        return cache

    def cached_video_means(self, cache: dict) -> torch.Tensor:
        return cache['pooled']

    def cached_distances(self, cache: dict, support_index: torch.Tensor,
                         query_index: torch.Tensor, num_ways: int,
                         num_shots: int) -> torch.Tensor:
        unit = cache['unit_frames']
        if 'pair_table' not in cache:
            frame_dists = self.frame_distances(
                gather_videos(unit, query_index),
                gather_videos(unit, support_index))
            return self.alignment_distances(frame_dists, num_ways, num_shots)
        table, known = cache['pair_table'], cache['pair_known']
        num_videos = unit.shape[0]
        # (..., M, N * K) rows of the table
        pairs = (query_index.unsqueeze(-1) * num_videos +
                 support_index.unsqueeze(-2)).to(unit.device)
        new = pairs.unique()
        new = new[~known[new]]
        if new.numel():  # (P, 1, T, C) x (P, 1, T, C) -> (P, T, T)
            table[new] = self.frame_distances(
                gather_videos(unit, new // num_videos).unsqueeze(1),
                gather_videos(unit, new % num_videos).unsqueeze(1))[:, 0, 0]
            known[new] = True
        return self.alignment_distances(
            gather_videos(table, pairs), num_ways, num_shots)
