"""Meta-test at the cost of one backbone pass per video.

Peers (TRX, CLIP-FSAR) run the backbone on every video of every test
episode.  With a deterministic test pipeline (``SampleFrames(test_mode=True)``
and a centre crop) a video's per-frame features are the same in every
episode, so these loops embed each video of the episode set's underlying
dataset once (a loader built like the episode loader, its ``DefaultSampler``
splitting the videos across ranks, then gathered), let the heads do their
per-video work once (e.g. OTAM's frame distances of every pair of videos),
and run all episodes from that cache by video index: only the head's
per-episode part (and, for AMFIR, ASI / AMI) runs per episode, on chunks of
``episode_batch_size`` episodes at once, split across ranks by the episode
loader's sampler.
``tests/test_cached_episode_loops.py`` checks the predictions equal the
per-episode path.

The model provides three methods, the interface of
:class:`~amfir_mm.models.recognizers.EpisodicInferenceMixin` (both
recognisers of amfir-mm implement it):

- ``embed_videos(data_batch) -> Tensor (B, T, C) | dict[str, Tensor]``:
  per-frame features of a collated batch of single videos;
- ``cache_videos(features) -> cache``: the per-video work on the features
  of all videos ``(num_videos, T, C)`` (or a dict of them, one per
  modality);
- ``predict_episodes(cache, data_samples, video_index=...) ->
  list[ActionDataSample]``: predictions of ``E`` episodes given by their
  ``(E, V)`` video indices in episode input order.

``embeddings_file`` keeps the features across runs, keyed on what made
them: the video list, a SHA-256 of the model's weights
(:func:`weights_hash`) and of the video dataset's config (pipeline, data
root, frame template) plus ``fp16``.  A file whose keys differ is recomputed
and overwritten, with a log line naming what changed; a file this loop did
not write is refused, never overwritten.
"""
import copy
import hashlib
import json
import os
import os.path as osp
import re
import tempfile
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmaction.registry import LOOPS
from mmengine.dist import collect_results, get_dist_info
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner, TestLoop, ValLoop
from mmengine.runner.amp import autocast
from torch.utils.data import DataLoader

from ..utils.io import RefuseOverwriteError

Features = Union[torch.Tensor, Dict[str, torch.Tensor]]
EMBEDDINGS_FORMAT = 'amfir_mm.CachedEpisodeLoop.embeddings/v2'
# keys of the loop's dataloader config that describe episodes, not videos:
# the video loader sets its own dataset, sampler and batch size (and never
# drops or slices videos); every other key (num_workers, collate_fn,
# pin_memory, persistent_workers, worker_init_fn, ...) applies to it
EPISODE_LOADER_KEYS = ('dataset', 'sampler', 'batch_sampler', 'batch_size',
                       'drop_last', 'num_batch_per_epoch')


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of every parameter and buffer of ``model``.

    Hashes, in sorted key order, each tensor's name, dtype, shape and raw
    bytes; buffers include non-persistent ones (e.g. the data
    preprocessor's mean and std), which ``state_dict()`` leaves out.
    """
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        digest.update(f'{name}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(
            torch.uint8).numpy())
    return digest.hexdigest()


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
        runner (Runner): the runner.
        dataloader (dict | DataLoader): the episode loader (an
            :class:`EpisodicDataset`).  Its sampler splits the episodes
            across ranks; its other settings but the batch size
            (``num_workers``, ``collate_fn``, ``pin_memory``,
            ``persistent_workers``, ``worker_init_fn``, ...) also build the
            video loader (see :meth:`build_video_loader`).
        evaluator (dict | list | Evaluator): the episode evaluator.
        fp16 (bool): autocast the embedding and the episodes.
            Defaults to False.
        video_batch_size (int): videos per backbone batch when embedding.
        embeddings_file (str, optional): reuse the per-video features saved
            there if the file lists the same videos and was made with the
            same weights and video pipeline (see the module docstring),
            else compute them and save them there.  A file there that this
            loop did not write is an error (never overwritten).
        episode_batch_size (int): episodes per model call on the cached
            features: the iteration hooks run once per such chunk
            (``batch_idx`` = chunk index, ``data_batch =
            dict(data_samples=...)`` its episodes) and the evaluator
            processes a chunk at a time.  Predictions do not depend on it
            (up to float rounding).  The default amortises the per-call
            overhead while a chunk's per-episode tensors stay small.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, dict],
                 evaluator,
                 fp16: bool = False,
                 video_batch_size: int = 8,
                 embeddings_file: Optional[str] = None,
                 episode_batch_size: int = 64) -> None:
        for name, value in (('video_batch_size', video_batch_size),
                            ('episode_batch_size', episode_batch_size)):
            if value < 1:
                raise ValueError(f'{name} must be >= 1, got {value}')
        super().__init__(runner, dataloader, evaluator, fp16)
        self.video_batch_size = video_batch_size
        self.embeddings_file = embeddings_file
        self.episode_batch_size = episode_batch_size
        # the episode loader's settings that apply to the video loader
        # (workers, collate_fn, ...) and the video dataset's config
        # (pipeline, root, ...), which keys the embeddings file; None when
        # the loop got a built data loader
        self._video_loader_cfg = None
        self._video_dataset_cfg = None
        if isinstance(dataloader, dict):
            self._video_loader_cfg = {
                key: copy.deepcopy(value)
                for key, value in dataloader.items()
                if key not in EPISODE_LOADER_KEYS
            }
            if isinstance(dataloader.get('dataset'), dict):
                episodes_cfg = dataloader['dataset']
                self._video_dataset_cfg = copy.deepcopy(
                    episodes_cfg.get('dataset', episodes_cfg))

    @property
    def _model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def build_video_loader(self, videos) -> DataLoader:
        """The loader of every video of ``videos`` (the episode set's
        video dataset), in index order, split across ranks.

        Built by :meth:`mmengine.runner.Runner.build_dataloader` from the
        loop's dataloader config with ``DefaultSampler(shuffle=False)`` and
        ``video_batch_size`` videos a batch, so the config's
        ``num_workers``, ``collate_fn``, ``pin_memory``,
        ``persistent_workers`` and ``worker_init_fn`` take effect (for a
        built episode loader: its ``num_workers``, ``collate_fn``,
        ``pin_memory``, ``persistent_workers`` and ``worker_init_fn``).
        Rank ``r`` of ``w`` gets videos ``r, r + w, ...``, padded by
        repeating the first videos to ``ceil(num_videos / w)`` each;
        :func:`mmengine.dist.collect_results` restores the index order and
        drops the padding.
        """
        if self._video_loader_cfg is not None:
            cfg = dict(self._video_loader_cfg)
        else:
            episode_loader = self.dataloader
            cfg = dict(
                num_workers=episode_loader.num_workers,
                collate_fn=episode_loader.collate_fn,
                pin_memory=episode_loader.pin_memory,
                persistent_workers=episode_loader.persistent_workers)
            if episode_loader.worker_init_fn is not None:
                cfg['worker_init_fn'] = dict(
                    type=episode_loader.worker_init_fn)
        # build_dataloader deep-copies its config, so the loader reads a
        # copy of the video dataset (same data list and pipeline)
        cfg.update(
            dataset=videos,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=self.video_batch_size)
        return Runner.build_dataloader(
            cfg,
            seed=self.runner.seed,
            diff_rank_seed=self.runner._randomness_cfg.get(
                'diff_rank_seed', False))

    def _video_keys(self, videos) -> List[str]:
        return [
            self.dataloader.dataset.video_key(i) for i in range(len(videos))
        ]

    def pipeline_hash(self) -> str:
        """SHA-256 (hex) of how videos become model inputs: the video
        dataset's config (pipeline, data root, frame template; or, for a
        loop given a built data loader, its pipeline's repr) and ``fp16``.
        """
        described = self._video_dataset_cfg
        if described is None:
            videos = self.dataloader.dataset.dataset
            described = dict(
                pipeline=re.sub(r' at 0x[0-9a-fA-F]+', '',
                                repr(videos.pipeline)),
                data_prefix=getattr(videos, 'data_prefix', None),
                filename_tmpl=getattr(videos, 'filename_tmpl', None))
        text = json.dumps(
            dict(dataset=described, fp16=bool(self.fp16)),
            sort_keys=True,
            default=repr)
        return hashlib.sha256(text.encode()).hexdigest()

    def _load_embeddings(self,
                         keys: Dict[str,
                                    object]) -> Tuple[Optional[Features], str]:
        """The features saved in ``embeddings_file`` if its ``keys``
        (``video_keys``, ``model_hash``, ``pipeline_hash``) all match, else
        None, and a log line saying why."""
        path = self.embeddings_file
        try:
            saved = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as err:  # not a torch file, or foreign objects
            first_line = (str(err).splitlines() or [''])[0]
            saved, reason = None, f'{type(err).__name__}: {first_line}'
        else:
            reason = 'it does not hold video_keys and features'
        if not isinstance(saved, dict) or not {'video_keys', 'features'
                                               } <= set(saved):
            raise RefuseOverwriteError(
                f'embeddings_file {path} exists but was not written by '
                f'{type(self).__name__} ({reason}); refusing to overwrite '
                'it: set embeddings_file to a new path or remove the file')
        changed = [
            name for name, key in (('videos', 'video_keys'), ('weights',
                                                              'model_hash'),
                                   ('pipeline', 'pipeline_hash'))
            if saved.get(key) != keys[key]
        ]
        if 'model_hash' not in saved:  # written before the file was keyed
            return None, (f'{path}: recomputing: the file has no weights/'
                          'pipeline hash (written by an older version)')
        if changed:
            return None, (f'{path}: recomputing: {"/".join(changed)} '
                          'changed')
        return saved['features'], (
            f'loaded {len(keys["video_keys"])} video embeddings from {path} '
            '(same videos, weights and pipeline)')

    @torch.no_grad()
    def embed_all_videos(self) -> Features:
        """Per-frame features of every video, ``(num_videos, T, C)``."""
        episodes = self.dataloader.dataset
        episodes.full_init()
        videos = episodes.dataset
        keys = None
        if self.embeddings_file:
            keys = dict(
                video_keys=self._video_keys(videos),
                model_hash=weights_hash(self._model),
                pipeline_hash=self.pipeline_hash())
            if osp.isfile(self.embeddings_file):
                features, message = self._load_embeddings(keys)
                if features is not None:
                    self.runner.logger.info(message)
                    return features
                self.runner.logger.warning(message)
        loader = self.build_video_loader(videos)
        # this rank's videos, padding included
        num_mine = len(loader.sampler)
        model, per_video = self._model, []
        step = max(1, len(loader) // 10)
        for i, batch in enumerate(loader):
            with autocast(enabled=self.fp16):
                feats = _to(model.embed_videos(batch), 'cpu')
            first = next(iter(feats.values())) if isinstance(feats,
                                                             dict) else feats
            for b in range(first.shape[0]):
                per_video.append({
                    k: v[b]
                    for k, v in feats.items()
                } if isinstance(feats, dict) else feats[b])
            if (i + 1) % step == 0 or i + 1 == len(loader):
                self.runner.logger.info(
                    f'embedded {len(per_video)}/{num_mine} videos (this '
                    'rank)')
        # per_video is in this rank's sampler order: collect_results
        # interleaves the ranks' lists back into index order and cuts the
        # padding off at len(videos)
        per_video = collect_results(per_video, len(videos), device='cpu')
        rank, _ = get_dist_info()
        if rank == 0:
            per_video = _stack(per_video)
        features = self._broadcast(per_video)
        if self.embeddings_file and rank == 0:
            # whole or not at all: a half-written file is never left there
            handle, partial = tempfile.mkstemp(
                suffix='.partial',
                prefix=osp.basename(self.embeddings_file),
                dir=osp.dirname(osp.abspath(self.embeddings_file)))
            os.close(handle)
            try:
                torch.save(
                    dict(format=EMBEDDINGS_FORMAT, features=features, **keys),
                    partial)
                os.replace(partial, self.embeddings_file)
            finally:
                if osp.exists(partial):
                    os.remove(partial)
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
        _, world = get_dist_info()
        # this rank's episodes, as the episode loader's sampler gives them
        # (DefaultSampler: every world-th episode, padded to a multiple of
        # the world size; the evaluator drops the padding)
        mine = list(self.dataloader.sampler)
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
                f'before_{self._phase}_iter',
                batch_idx=batch_idx,
                data_batch=data_batch)
            with autocast(enabled=self.fp16):
                outputs = model.predict_episodes(
                    cache, samples, video_index=_video_index(orders))
            self.evaluator.process(data_samples=outputs, data_batch=data_batch)
            self.runner.call_hook(
                f'after_{self._phase}_iter',
                batch_idx=batch_idx,
                data_batch=data_batch,
                outputs=outputs)

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


@LOOPS.register_module()
class CachedEpisodeTestLoop(CachedEpisodeMixin, TestLoop):
    """Meta-test over fixed episodes from once-per-video embeddings (see
    :class:`CachedEpisodeMixin` for the arguments)."""
    _phase = 'test'
