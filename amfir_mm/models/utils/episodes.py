"""Episode bookkeeping shared by the few-shot heads and recognisers.

An episode of :class:`EpisodicDataset` holds ``V = N * K + M`` videos of
``T`` frames, support first (class-major), then the ``M = N * Q`` queries.
Its per-frame features are ``(V * T, C)`` (``(E, V * T, C)`` for ``E``
episodes); in the cached meta-test
(:mod:`amfir_mm.engine.cached_episode_loops`) an episode is instead ``(V, )``
indices into per-video caches ``(num_videos, ...)``.
"""
from typing import (Any, Callable, Dict, List, Optional, Sequence, Tuple,
                    TypeVar, Union)

import torch

EPISODE_SHAPE_KEYS = ('num_ways', 'num_shots', 'num_queries')
Result = TypeVar('Result')


def split_episode(feats: torch.Tensor,
                  meta: dict) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split episodes' per-frame features into support and query.

    Args:
        feats: ``(..., V * T, C)`` features of each episode's ``V`` videos,
            support first, in :class:`EpisodicDataset` order (leading dims,
            e.g. ``E`` episodes, are optional).
        meta: the episodes' metainfo (``num_ways``, ``num_shots``,
            ``num_queries``).

    Returns:
        ``support (..., N * K, T, C)`` and ``query (..., M, T, C)``.
    """
    n_support = meta['num_ways'] * meta['num_shots']
    n_videos = n_support + meta['num_ways'] * meta['num_queries']
    frames = feats.shape[-2]
    if frames % n_videos:
        raise ValueError(f'{frames} frames cannot be split into '
                         f'{n_videos} videos')
    videos = feats.unflatten(-2, (n_videos, frames // n_videos))
    return videos[..., :n_support, :, :], videos[..., n_support:, :, :]


def split_episode_index(video_index: torch.Tensor,
                        meta: dict) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split episodes' video indices into support and query, as
    :func:`split_episode` splits their features.

    Args:
        video_index: ``(..., V)`` indices of each episode's videos (into a
            cache of per-video features), support first.
        meta: the episodes' ``num_ways``, ``num_shots``, ``num_queries``.

    Returns:
        ``support (..., N * K)`` and ``query (..., M)`` indices.
    """
    n_support = meta['num_ways'] * meta['num_shots']
    n_videos = n_support + meta['num_ways'] * meta['num_queries']
    if video_index.shape[-1] != n_videos:
        raise ValueError(f'{video_index.shape[-1]} video indices per '
                         f'episode, expected {n_videos}')
    return video_index[..., :n_support], video_index[..., n_support:]


def gather_videos(videos: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(num_videos, ...)`` per-video tensors, ``(...idx)`` indices ->
    ``(...idx, ...)`` (``index_select``: several times faster than advanced
    indexing on CPU)."""
    flat = videos.index_select(0, index.flatten().to(videos.device))
    return flat.reshape(*index.shape, *videos.shape[1:])


def episode_shape(data_samples: Sequence) -> Optional[dict]:
    """``num_ways``, ``num_shots`` and ``num_queries`` of a batch of
    episodes when all share them (as all episodes of an
    :class:`EpisodicDataset` do), else ``None``."""
    shapes = {
        tuple(getattr(s, k) for k in EPISODE_SHAPE_KEYS)
        for s in data_samples
    }
    if len(shapes) != 1:
        return None
    return dict(zip(EPISODE_SHAPE_KEYS, shapes.pop()))


def map_episode_batches(
    run_batch: Callable[[Any, dict, Optional[Any]], Result],
    feats: Any,
    data_samples: Sequence,
    video_index: Optional[Union[torch.Tensor, Sequence[torch.Tensor]]] = None
) -> Union[Result, List[Any]]:
    """Run ``run_batch(feats, meta, video_index)`` on a batch of episodes:
    once on all of them where they share a shape (:func:`episode_shape`),
    else on each episode alone.

    Batching is what makes the heads, ASI and AMI fast; episodes of several
    shapes (``N``, ``K``, ``Q``) cannot be stacked, so they run one by one,
    each as a batch of one: its features ``feats[e, None]`` (each tensor of
    a dict of them), or, with ``video_index``, the shared cache ``feats``
    and its indices ``video_index[e][None]``.

    Args:
        run_batch: ``(feats, meta, video_index) -> result`` on ``E``
            episodes of the shape ``meta`` (``num_ways``, ``num_shots``,
            ``num_queries``), whose result indexes by episode (an ``(E,
            ...)`` tensor, a list of ``E`` items).
        feats: ``(E, V * T, C)`` per-frame features (or a dict of them,
            e.g. one per modality), or, with ``video_index``, per-video
            caches of all videos.
        data_samples: the ``E`` episodes' samples.
        video_index: ``(E, V)`` the episodes' video indices into the
            caches, support first (for episodes of several shapes, ``E``
            tensors ``(V_e, )``).

    Returns:
        ``run_batch``'s result on all episodes where they share a shape,
        else the list of each episode's ``run_batch(...)[0]``; either way,
        iterating gives the episodes' results in order.
    """
    shape = episode_shape(data_samples)
    if shape is not None:
        return run_batch(feats, shape, video_index)
    results = []
    for e, sample in enumerate(data_samples):
        if video_index is None:
            one = run_batch(_episode(feats, e), sample.metainfo, None)
        else:
            one = run_batch(feats, sample.metainfo, video_index[e][None])
        results.append(one[0])
    return results


def _episode(feats: Union[torch.Tensor, Dict[str, torch.Tensor]],
             e: int) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
    """Episode ``e`` of ``(E, ...)`` features (or of a dict of them) as a
    batch of one, ``(1, ...)``."""
    if isinstance(feats, dict):
        return {k: f[e, None] for k, f in feats.items()}
    return feats[e, None]


def pooled_videos(feats: torch.Tensor,
                  meta: dict,
                  part: str,
                  video_index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Temporally pooled features of the supports ``(E, N * K, C)`` or the
    queries ``(E, M, C)`` (``part``, ``'support'`` or ``'query'``) of ``E``
    episodes.

    Args:
        feats: ``(E, V * T, C)`` per-frame features, or, with
            ``video_index``, ``(num_videos, C)`` frame means of all videos.
        meta: the episodes' ``num_ways``, ``num_shots``, ``num_queries``.
        part: ``'support'`` or ``'query'``.
        video_index: ``(E, V)`` the episodes' video indices into ``feats``.
    """
    if part not in ('support', 'query'):
        raise ValueError(f"part must be 'support' or 'query', got {part!r}")
    which = 0 if part == 'support' else 1
    if video_index is None:
        return split_episode(feats, meta)[which].mean(-2)
    return gather_videos(feats, split_episode_index(video_index, meta)[which])


def unbatch(outputs: Dict[str, torch.Tensor],
            clone: bool = False) -> List[Dict[str, torch.Tensor]]:
    """A dict of ``(E, ...)`` tensors -> ``E`` dicts of ``(...)`` ones.

    Views of the batch, or, with ``clone``, tensors with storages of their
    own (a view set on a data sample would keep, and e.g. ``DumpResults``
    would pickle, the whole batch).
    """
    per_key = [[t.clone() for t in v.unbind()] if clone else v.unbind()
               for v in outputs.values()]
    return [dict(zip(outputs, values)) for values in zip(*per_key)]


def top1_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of the ``M`` queries whose ``(M, N)`` scores peak at their
    ``(M, )`` label, detached."""
    return (scores.argmax(-1) == labels).float().mean().detach()
