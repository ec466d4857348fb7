"""Meta-test at the cost of one backbone pass per video.

Peers (TRX, CLIP-FSAR) run the backbone on every video of every test
episode.  With a deterministic test pipeline (``SampleFrames(test_mode=True)``
and a centre crop) a video's per-frame features are the same in every
episode, so these loops embed each video of the episode set's underlying
dataset once (split across ranks, then gathered), let the heads do their
per-video work once (e.g. OTAM's frame distances of every pair of videos),
and run all episodes from that cache by video index: only the head's
per-episode part (and, for AMFIR, ASI / AMI) runs per episode, on chunks of
``episode_batch_size`` episodes at once.
``tests/test_cached_episode_loops.py`` checks the predictions equal the
per-episode path.

The model provides three methods (both recognisers of amfir-mm do):

- ``embed_videos(data_batch) -> Tensor (B, T, C) | dict[str, Tensor]``:
  per-frame features of a collated batch of single videos;
- ``cache_videos(features) -> cache``: the per-video work on the features
  of all videos ``(num_videos, T, C)`` (or a dict of them, one per
  modality);
- ``predict_episodes(cache, data_samples, video_index=...) ->
  list[ActionDataSample]``: predictions of ``E`` episodes given by their
  ``(E, V)`` video indices in episode input order.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Union

import torch
from mmaction.registry import LOOPS
from mmengine.dataset import DefaultSampler, pseudo_collate
from mmengine.dist import collect_results, get_dist_info
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop, ValLoop
from mmengine.runner.amp import autocast
from torch.utils.data import DataLoader

Features = Union[torch.Tensor, Dict[str, torch.Tensor]]


def _video_index(orders: List[List[int]]):
    """Episodes' video indices: ``(E, V)`` where all have ``V`` videos,
    else ``E`` tensors ``(V_e, )``."""
    if len({len(order) for order in orders}) == 1:
        return torch.as_tensor(orders)
    return [torch.as_tensor(order) for order in orders]


def _to(feats: Features, device) -> Features:
    if isinstance(feats, dict):
        return {k: v.to(device) for k, v in feats.items()}
    return feats.to(device)


def _stack(parts: List[Features]) -> Features:
    if isinstance(parts[0], dict):
        return {k: torch.stack([p[k] for p in parts]) for k in parts[0]}
    return torch.stack(parts)


class CachedEpisodeMixin:
    """Shared body of :class:`CachedEpisodeValLoop` / ``TestLoop``.

    Args:
        video_batch_size (int): videos per backbone batch when embedding.
        embeddings_file (str, optional): reuse the per-video features saved
            there (if the file exists and lists the same videos), else save
            them there after computing.
        episode_batch_size (int): episodes per model call on the cached
            features: the iteration hooks run once per such chunk
            (``batch_idx`` = chunk index, ``data_batch =
            dict(data_samples=...)`` its episodes) and the evaluator
            processes a chunk at a time.  Predictions do not depend on it
            (up to float rounding).  The default amortises the per-call
            overhead while a chunk's per-episode tensors stay small.
    """

    def _setup(self, video_batch_size: int, embeddings_file: Optional[str],
               episode_batch_size: int) -> None:
        if episode_batch_size < 1:
            raise ValueError(f'episode_batch_size must be >= 1, got '
                             f'{episode_batch_size}')
        self.video_batch_size = video_batch_size
        self.embeddings_file = embeddings_file
        self.episode_batch_size = episode_batch_size

    @property
    def _model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def _video_keys(self, videos) -> List[str]:
        return [self.dataloader.dataset.video_key(i)
                for i in range(len(videos))]

    @torch.no_grad()
    def embed_all_videos(self) -> Features:
        """Per-frame features of every video, ``(num_videos, T, C)``."""
        episodes = self.dataloader.dataset
        episodes.full_init()
        videos = episodes.dataset
        keys = self._video_keys(videos)
        if self.embeddings_file and osp.isfile(self.embeddings_file):
            saved = torch.load(self.embeddings_file, map_location='cpu',
                               weights_only=True)
            if saved['video_keys'] == keys:
                self.runner.logger.info(
                    f'loaded {len(keys)} video embeddings from '
                    f'{self.embeddings_file}')
                return saved['features']
            self.runner.logger.warning(
                f'{self.embeddings_file} lists other videos; recomputing')
        loader = DataLoader(
            videos,
            batch_size=self.video_batch_size,
            num_workers=self.dataloader.num_workers,
            sampler=DefaultSampler(videos, shuffle=False),
            collate_fn=pseudo_collate)
        model, per_video = self._model, []
        step = max(1, len(loader) // 10)
        for i, batch in enumerate(loader):
            with autocast(enabled=self.fp16):
                feats = _to(model.embed_videos(batch), 'cpu')
            first = next(iter(feats.values())) if isinstance(
                feats, dict) else feats
            for b in range(first.shape[0]):
                per_video.append({k: v[b] for k, v in feats.items()}
                                 if isinstance(feats, dict) else feats[b])
            if (i + 1) % step == 0 or i + 1 == len(loader):
                done = min((i + 1) * self.video_batch_size, len(videos))
                self.runner.logger.info(
                    f'embedded {done}/{len(videos)} videos (this rank)')
        per_video = collect_results(per_video, len(videos), device='cpu')
        rank, _ = get_dist_info()
        if rank == 0:
            per_video = _stack(per_video)
        features = self._broadcast(per_video)
        if self.embeddings_file and rank == 0:
            torch.save(dict(video_keys=keys, features=features),
                       self.embeddings_file)
        return features

    def _broadcast(self, obj):
        from mmengine.dist import broadcast_object_list, get_world_size
        if get_world_size() == 1:
            return obj
        box = [obj]
        broadcast_object_list(box, src=0)
        return box[0]

    @torch.no_grad()
    def run_episodes(self, features: Features) -> dict:
        """Predict every episode from cached features and evaluate."""
        episodes = self.dataloader.dataset
        rank, world = get_dist_info()
        # Like DefaultSampler: pad to a multiple of the world size, take
        # every world-th episode; the evaluator drops the padding.
        total = -(-len(episodes) // world) * world
        mine = [i % len(episodes) for i in range(rank, total, world)]
        model = self._model
        features = _to(features, next(model.parameters()).device)
        # The episode phase shares the cores among the processes of this
        # machine (torchrun's LOCAL_WORLD_SIZE; unknown: all of them), so
        # several processes on one machine do not oversubscribe it.
        local_processes = int(os.environ.get('LOCAL_WORLD_SIZE', world))
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // local_processes))
        try:
            with autocast(enabled=self.fp16):
                cache = model.cache_videos(features)
            self._predict_episodes(mine, cache, model)
        finally:
            torch.set_num_threads(threads)
        return self.evaluator.evaluate(len(episodes))

    def _predict_episodes(self, mine: List[int], cache, model) -> None:
        """Predict and evaluate the episodes ``mine``, a chunk at a time."""
        episodes = self.dataloader.dataset
        size = self.episode_batch_size
        for batch_idx, start in enumerate(range(0, len(mine), size)):
            orders, samples = zip(*(episodes.episode_sample(index)
                                    for index in mine[start:start + size]))
            samples = list(samples)
            data_batch = dict(data_samples=samples)
            self.runner.call_hook(
                f'before_{self._phase}_iter', batch_idx=batch_idx,
                data_batch=data_batch)
            with autocast(enabled=self.fp16):
                outputs = model.predict_episodes(
                    cache, samples, video_index=_video_index(orders))
            self.evaluator.process(data_samples=outputs,
                                   data_batch=data_batch)
            self.runner.call_hook(
                f'after_{self._phase}_iter', batch_idx=batch_idx,
                data_batch=data_batch, outputs=outputs)

    def run(self) -> dict:
        phase = self._phase
        self.runner.call_hook(f'before_{phase}')
        self.runner.call_hook(f'before_{phase}_epoch')
        self.runner.model.eval()
        metrics = self.run_episodes(self.embed_all_videos())
        self.runner.call_hook(f'after_{phase}_epoch', metrics=metrics)
        self.runner.call_hook(f'after_{phase}')
        return metrics


@LOOPS.register_module()
class CachedEpisodeValLoop(CachedEpisodeMixin, ValLoop):
    """Validation over fixed episodes from once-per-video embeddings (see
    :class:`CachedEpisodeMixin` for the arguments)."""
    _phase = 'val'

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False,
                 video_batch_size: int = 8,
                 embeddings_file: Optional[str] = None,
                 episode_batch_size: int = 64) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self._setup(video_batch_size, embeddings_file, episode_batch_size)


@LOOPS.register_module()
class CachedEpisodeTestLoop(CachedEpisodeMixin, TestLoop):
    """Meta-test over fixed episodes from once-per-video embeddings (see
    :class:`CachedEpisodeMixin` for the arguments)."""
    _phase = 'test'

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False,
                 video_batch_size: int = 8,
                 embeddings_file: Optional[str] = None,
                 episode_batch_size: int = 64) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self._setup(video_batch_size, embeddings_file, episode_batch_size)
