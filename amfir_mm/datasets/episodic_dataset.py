"""N-way K-shot episodes over any MMAction2 video dataset."""
import json
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from mmaction.registry import DATASETS
from mmaction.structures import ActionDataSample
from mmengine.dataset import BaseDataset
from mmengine.logging import MMLogger

from ..utils.io import DataError
from ..utils.tool import plural


class EpisodeError(DataError, ValueError):
    """The data cannot supply the requested episodes."""


class VideoLoadError(DataError, RuntimeError):
    """A video of an episode cannot be loaded because of its data (missing
    or unreadable frame); names the video's split line and the file."""


@DATASETS.register_module()
class EpisodicDataset:
    """Wrap a video dataset into N-way K-shot few-shot episodes.

    Item ``i`` is one episode, a deterministic function of ``(seed, i)``
    (``numpy.random.default_rng([seed, i])``): ``num_ways`` classes, and for
    each ``num_shots`` support and ``num_queries`` query videos, all distinct.
    A training set is a large pool of such episodes (MMEngine's samplers
    shuffle it and split it across ranks without duplicates); a val/test set
    is a fixed list of ``num_episodes`` from its seed, or the list read from
    ``episodes_file`` so that different methods see identical episodes.

    An item is ``dict(inputs=..., data_samples=ActionDataSample)`` where
    ``inputs`` is every video's packed clip concatenated along the first
    axis, support videos first (class-major: class 0 shots, class 1 shots,
    ...) then queries (class-major): a ``(V * T, C, H, W)`` tensor for a
    ``NCHW``-formatted pipeline with ``V = num_ways * (num_shots +
    num_queries)`` and ``T`` frames per video, or a dict of such tensors for
    multi-modal pipelines (``PackActionInputs(collect_keys=...)``).  The data
    sample carries ``gt_label`` = the queries' episode labels ``(N * Q,)``
    in ``0..N-1`` and the metainfo ``num_ways``, ``num_shots``,
    ``num_queries``, ``episode_index``, ``class_labels`` (the dataset labels
    of the episode's classes) and ``video_ids``.

    Args:
        dataset (dict | BaseDataset): the video dataset (e.g.
            ``FewShotRawframeDataset`` or MMAction2's ``RawframeDataset``);
            its pipeline prepares one video.
        num_ways (int): N, classes per episode.
        num_shots (int): K, support videos per class.
        num_queries (int): Q, query videos per class.
        num_episodes (int): episodes in the set (the pool size in training).
        seed (int): episode seed.
        episodes_file (str, optional): read the episode list from this JSON
            file (written by :meth:`save_episodes`) instead of drawing it.
        drop_small_classes (bool): ignore classes with fewer than K + Q
            videos (logged); by default such a class is an error.
        check_frame_dirs (bool): check at start-up that every video's frame
            folder exists, naming the annotation line of a missing one.
        lazy_init (bool): defer :meth:`full_init` (indexing and checks) to
            first use, as MMEngine's ``BaseDataset`` does.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 num_ways: int = 5,
                 num_shots: int = 1,
                 num_queries: int = 1,
                 num_episodes: int = 1000,
                 seed: int = 0,
                 episodes_file: Optional[str] = None,
                 drop_small_classes: bool = False,
                 check_frame_dirs: bool = True,
                 lazy_init: bool = False) -> None:
        self.dataset = (
            DATASETS.build(dataset) if isinstance(dataset, dict) else dataset)
        self.num_ways = num_ways
        self.num_shots = num_shots
        self.num_queries = num_queries
        self.num_episodes = num_episodes
        self.seed = seed
        self.episodes_file = episodes_file
        self.drop_small_classes = drop_small_classes
        self.check_frame_dirs = check_frame_dirs
        self._fully_initialized = False
        self._episodes: Optional[List[dict]] = None
        self._video_keys: Dict[int, str] = {}
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        meta = dict(self.dataset.metainfo)
        meta.update(
            num_ways=self.num_ways,
            num_shots=self.num_shots,
            num_queries=self.num_queries)
        return meta

    @property
    def videos_per_episode(self) -> int:
        return self.num_ways * (self.num_shots + self.num_queries)

    def _source(self, idx: int) -> str:
        info = self.dataset.get_data_info(idx)
        if 'source' in info:
            return info['source']
        return f'{self.dataset.ann_file}:{idx + 1}'

    def full_init(self) -> None:
        """Index the videos by class and check the episode can be drawn."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        need = self.num_shots + self.num_queries
        by_label: Dict[int, List[int]] = defaultdict(list)
        for idx in range(len(self.dataset)):
            info = self.dataset.get_data_info(idx)
            if self.check_frame_dirs and 'frame_dir' in info and \
                    not osp.isdir(info['frame_dir']):
                raise FileNotFoundError(
                    f'frame folder missing: {info["frame_dir"]} (listed at '
                    f'{self._source(idx)})')
            by_label[int(info['label'])].append(idx)
        small = {c: len(v) for c, v in by_label.items() if len(v) < need}
        origin = self.dataset.ann_file or 'the data root'
        if small:
            names = self.dataset.metainfo.get('classes')
            desc = ', '.join(
                f'{names[c] if names else c} ({plural(n, "video")})'
                for c, n in sorted(small.items()))
            msg = (f'{plural(len(small), "class")} in {origin} '
                   f'{"has" if len(small) == 1 else "have"} fewer than '
                   f'num_shots + num_queries = '
                   f'{plural(need, "video")}: {desc}')
            if not self.drop_small_classes:
                raise EpisodeError(msg + '; pass drop_small_classes=True to '
                                   'ignore them')
            MMLogger.get_current_instance().warning(
                f'EpisodicDataset: dropping {msg}')
        self._class_videos = {
            c: np.asarray(v)
            for c, v in sorted(by_label.items()) if c not in small
        }
        self._classes = np.asarray(sorted(self._class_videos))
        if len(self._classes) < self.num_ways:
            raise EpisodeError(
                f'{self.num_ways}-way episodes need {self.num_ways} classes '
                f'with >= {need} videos; {origin} has {len(self._classes)}')
        if self.episodes_file:
            self._episodes = self._read_episodes(self.episodes_file)
            self.num_episodes = len(self._episodes)
        self._fully_initialized = True

    def __len__(self) -> int:
        return self.num_episodes

    def draw_episode(self, index: int) -> dict:
        """The episode ``index`` as dataset indices.

        Returns:
            dict: ``classes`` (N dataset labels), ``support`` (N lists of K
            video indices) and ``query`` (N lists of Q video indices).
        """
        if self._episodes is not None:
            return self._episodes[index]
        rng = np.random.default_rng([self.seed, index])
        classes = rng.choice(self._classes, self.num_ways, replace=False)
        support, query = [], []
        for c in classes:
            videos = rng.choice(
                self._class_videos[c],
                self.num_shots + self.num_queries,
                replace=False)
            support.append(videos[:self.num_shots].tolist())
            query.append(videos[self.num_shots:].tolist())
        return dict(classes=classes.tolist(), support=support, query=query)

    # -- episode lists on disk ------------------------------------------
    def video_key(self, idx: int) -> str:
        """The id of video ``idx`` of the wrapped dataset (its ``video_id``,
        else its ``frame_dir``): episode and embedding files are keyed by
        it."""
        key = self._video_keys.get(idx)
        if key is None:  # get_data_info deep-copies: look each video up once
            info = self.dataset.get_data_info(idx)
            key = self._video_keys[idx] = (
                info.get('video_id') or info['frame_dir'])
        return key

    def save_episodes(self, path: str) -> None:
        """Write all episodes (by video id) to a JSON file."""
        key = self.video_key
        episodes = []
        for i in range(len(self)):
            ep = self.draw_episode(i)
            episodes.append(
                dict(
                    classes=[int(c) for c in ep['classes']],
                    support=[[key(v) for v in vs] for vs in ep['support']],
                    query=[[key(v) for v in vs] for vs in ep['query']]))
        with open(path, 'w') as f:
            json.dump(
                dict(
                    num_ways=self.num_ways,
                    num_shots=self.num_shots,
                    num_queries=self.num_queries,
                    seed=self.seed,
                    episodes=episodes), f)

    def _read_episodes(self, path: str) -> List[dict]:
        if not osp.isfile(path):
            raise FileNotFoundError(f'episodes file not found: {path}')
        with open(path) as f:
            content = json.load(f)
        shape = (content['num_ways'], content['num_shots'],
                 content['num_queries'])
        if shape != (self.num_ways, self.num_shots, self.num_queries):
            raise EpisodeError(
                f'{path} holds {shape[0]}-way {shape[1]}-shot episodes with '
                f'{shape[2]} queries; this dataset is configured for '
                f'{self.num_ways}-way {self.num_shots}-shot with '
                f'{self.num_queries}')
        index = {self.video_key(i): i for i in range(len(self.dataset))}

        def lookup(key, ep_no):
            if key not in index:
                raise EpisodeError(
                    f'{path}: episode {ep_no} names video {key!r}, which is '
                    'not in the dataset')
            return index[key]

        return [
            dict(
                classes=ep['classes'],
                support=[[lookup(k, n) for k in ks] for ks in ep['support']],
                query=[[lookup(k, n) for k in ks] for ks in ep['query']])
            for n, ep in enumerate(content['episodes'])
        ]

    # -- loading ----------------------------------------------------------
    def _prepare_video(self, idx: int) -> dict:
        try:
            data = self.dataset.prepare_data(idx)
        except Exception as err:
            # bad data (a DataError or OSError naming the file) stays a
            # DataError, which the tools print as one line
            kind = VideoLoadError if isinstance(err,
                                                (DataError,
                                                 OSError)) else RuntimeError
            raise kind(f'failed to load video {self._source(idx)}: '
                       f'{type(err).__name__}: {err}') from err
        if data is None:
            raise RuntimeError(
                f'the pipeline filtered out video {self._source(idx)}')
        return data

    def episode_sample(self, index: int) -> tuple:
        """Episode ``index`` without loading its videos.

        Returns:
            tuple: the video indices in input order (support class-major,
            then queries class-major) and the episode's
            :class:`ActionDataSample` (labels and metainfo).
        """
        if not self._fully_initialized:
            self.full_init()
        episode = self.draw_episode(index)
        order = [v for vs in episode['support'] for v in vs] + \
                [v for vs in episode['query'] for v in vs]
        sample = ActionDataSample()
        sample.set_gt_label(
            torch.arange(self.num_ways).repeat_interleave(self.num_queries))
        meta = dict(
            num_ways=self.num_ways,
            num_shots=self.num_shots,
            num_queries=self.num_queries,
            episode_index=index,
            class_labels=[int(c) for c in episode['classes']],
            video_ids=[self.video_key(v) for v in order])
        # as set_metainfo, minus its deep copy of these fresh values (a
        # large share of an episode's cost in the cached meta-test)
        for name, value in meta.items():
            sample.set_field(value, name, field_type='metainfo')
        return order, sample

    def __getitem__(self, index: int) -> dict:
        order, sample = self.episode_sample(index)
        videos = [self._prepare_video(v) for v in order]
        first = videos[0]['inputs']
        if isinstance(first, dict):
            inputs = {
                k: torch.cat([v['inputs'][k] for v in videos])
                for k in first
            }
        else:
            inputs = torch.cat([v['inputs'] for v in videos])
        return dict(inputs=inputs, data_samples=sample)
