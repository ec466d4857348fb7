"""Few-shot inference on a user's own clips: learn new actions from a few
example clips per class, then label new videos.

In the style of MMAction2's ``mmaction.apis.init_recognizer`` /
``ActionRecognitionInferencer``: the model is built from a config (its
``custom_imports`` register amfir-mm), the checkpoint is loaded with
MMEngine's ``load_checkpoint`` and the inputs go through the config's own
test pipeline, with its decode step swapped for the input at hand
(``DecordInit``/``DecordDecode``, PyAV as a fallback, for video files;
``RawFrameDecode`` for frame folders) and optical flow computed on the fly
(``FlowPairIndices`` + ``ComputeFlow``) with the estimator the config names
(DIS by default)::

    inferencer = FewShotInferencer(
        'configs/demo/amfir_shapes_1shot_r18.py',
        'work_dirs/demo/iter_300.pth')
    inferencer.fit({'wave': ['wave1.mp4', 'wave2.mp4'],
                    'clap': ['clap1.mp4', 'clap_frames/']})
    inferencer.predict(['new.mp4'])
    # [{'query': 'new.mp4', 'label': 'wave',
    #   'scores': {'wave': 0.91, 'clap': 0.09},
    #   'reliability': {'rgb': 0.35, 'flow': 0.65},
    #   'modality_scores': {'rgb': {...}, 'flow': {...}}}]

How the scores are made: the support clips are embedded once by
:meth:`FewShotInferencer.fit` (per-frame features ``(T, C)`` of every
modality); :meth:`~FewShotInferencer.predict` embeds each query once per
modality and runs the model's own cached meta-test path on them
(``cache_videos`` + ``predict_episodes`` of
:class:`~amfir_mm.models.recognizers.EpisodicInferenceMixin`, as
:mod:`amfir_mm.engine.cached_episode_loops` does): each query is a query of
an N-way K-shot episode whose support is the user's classes, so its scores
are exactly what the meta-test gives for that support and query (queries do
not interact: they fill the episode's query slots ``N`` at a time).

Classes with different numbers of clips: the heads take ``K`` shots per
class, so each class's clips are repeated to ``K = lcm`` of the counts
(e.g. 2 and 3 clips -> each clip 3 and 2 times).  For the heads of
amfir-mm (prototype: mean over shots; OTAM: mean of per-shot distances;
TRX: attention over all shots' tuples) this gives exactly the class
distances of the clips themselves.

Missing flow: a query with one frame has no flow; it falls back to the RGB
branch alone, and its ``reliability`` is ``{'rgb': 1.0, 'flow': 0.0}``.
``modalities=('rgb',)`` takes the same path for every video (no flow is
computed at all).

Size and frame rate: frames are resized to the short side of the config's
first ``Resize`` *before* flow is computed, as ``tools/extract_flow.py
--short-side`` does for the training data, so flow is in pixels of the
resolution the model was trained on whatever the input size.  Flow is
taken between consecutive decoded frames: at a much higher frame rate than
the training videos its magnitudes are smaller.
"""
import copy
import logging
import math
import os.path as osp
import re
import sys
from functools import reduce
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from mmaction.registry import MODELS, TRANSFORMS
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import ProgressBar

from ..datasets.split_reader import count_frames
from ..flow.mmflow_estimator import UnsupportedDeviceError
from ..flow.quantization import DEFAULT_FLOW_BOUND
from ..flow.sources import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, FrameReadError,
                            list_frame_files)
from ..utils.config import config_errors_name, load_config
from ..utils.io import DataError, list_folder

__all__ = [
    'FewShotInferencer', 'SupportError', 'CheckpointError', 'FrameReadError',
    'find_clips', 'read_support_dir', 'inference_pipelines'
]

#: Steps of a config pipeline that read frames (replaced by the inferencer).
DECODE_STEPS = ('RawFrameDecode', 'PairedRawFrameDecode', 'DecordDecode',
                'PyAVDecode', 'OpenCVDecode', 'ComputeFlow')
#: Steps that only exist to pair RGB with flow (dropped without flow).
PAIRING_STEPS = ('StackRGBFlow', 'SplitRGBFlow', 'FlowMagnitudeImage')
DEFAULT_FLOW_ESTIMATOR = dict(type='DISFlowEstimator')
#: Largest number of shots per class the repetition to a common count
#: (least common multiple of the classes' clip counts) may reach.
MAX_SHOTS = 120
_NUMBERED = re.compile(r'^(.*?)(\d+)(\.[A-Za-z]+)$')


class SupportError(DataError, ValueError):
    """The example clips cannot define the classes (the message names the
    class or folder)."""


class CheckpointError(DataError, ValueError):
    """A checkpoint does not fit the config's model (missing, unexpected or
    differently shaped weights): a checkpoint of another config."""


def _type(step: dict) -> str:
    step_type = step['type']
    return step_type if isinstance(step_type, str) else step_type.__name__


def _is_video(path: str) -> bool:
    return osp.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS)


def _has_frames(folder: str) -> bool:
    return osp.isdir(folder) and bool(list_frame_files(folder))


def find_clips(folder: str) -> Tuple[List[str], List[str]]:
    """The clips in a folder: video files and frame folders.

    Args:
        folder: e.g. a class folder ``DIR/<class name>/``.

    Returns:
        tuple: sorted clip paths (video files by extension, see
        :data:`amfir_mm.flow.sources.VIDEO_EXTENSIONS`, and sub-folders
        holding JPEG/PNG frames) and the names of the other entries, which
        are not clips (hidden entries are left out of both).
    """
    folders, files = list_folder(folder)
    clips, others = [], []
    for name in sorted(folders + files):
        path = osp.join(folder, name)
        if _is_video(path) or _has_frames(path):
            clips.append(path)
        else:
            others.append(name)
    return clips, others


def read_support_dir(root: str) -> Dict[str, List[str]]:
    """Example clips per class from ``root/<class name>/``.

    Returns:
        dict: class name -> clip paths (see :func:`find_clips`), classes in
        sorted order.  Entries that are neither class folders nor clips are
        named in a warning.

    Raises:
        SupportError: ``root`` is missing or has no class folder, or a class
            folder is empty or holds no clip.
    """
    if not osp.isdir(root):
        raise SupportError(f'support folder not found: {root}')
    class_folders, files = list_folder(root)
    support, ignored = {}, [osp.join(root, f) for f in files]
    for name in class_folders:
        folder = osp.join(root, name)
        clips, others = find_clips(folder)
        if not clips:
            if _has_frames(folder):
                what = ('holds frames: put each clip\'s frames in a '
                        'sub-folder of its own')
            elif others:
                what = (f'holds no video ({"/".join(VIDEO_EXTENSIONS[:4])}'
                        f'...) or frame folder, only {", ".join(others[:5])}')
            else:
                what = 'is empty'
            raise SupportError(f'class {name!r}: {folder} {what}')
        support[name] = clips
        ignored += [osp.join(folder, o) for o in others]
    if not support:
        raise SupportError(f'no class folders in {root}: put the example '
                           'clips of each action in <support>/<class name>/')
    if ignored:
        print_log(
            f'support: ignored {len(ignored)} entries that are not '
            f'clips: {", ".join(ignored[:5])}'
            f'{" ..." if len(ignored) > 5 else ""}',
            logger='current',
            level=logging.WARNING)
    return support


def _frame_template(folder: str) -> Tuple[str, int]:
    """``filename_tmpl`` and ``start_index`` of a frame folder, from its
    first frame's name (``img_00001.jpg`` -> ``'img_{:05d}.jpg'``, 1);
    :func:`count_frames` then checks the numbering has no gap."""
    names = list_frame_files(folder)
    if not names:
        raise FrameReadError(f'{folder}: no JPEG/PNG frames')
    match = _NUMBERED.match(names[0])
    if not match or not names[0].lower().endswith(IMAGE_EXTENSIONS):
        raise FrameReadError(f'{folder}: frame names must end in a number, '
                             f'e.g. img_00001.jpg; found {names[0]!r}')
    prefix, digits, ext = match.groups()
    width = f'0{len(digits)}' if digits.startswith('0') else ''
    return prefix + '{:' + width + 'd}' + ext, int(digits)


def _test_pipeline(cfg: Config) -> List[dict]:
    """The config's test pipeline: ``test_dataloader.dataset`` (through
    wrappers such as :class:`EpisodicDataset`) or ``test_pipeline``."""
    dataset = cfg.get('test_dataloader', {}).get('dataset')
    while dataset is not None:
        if 'pipeline' in dataset:
            return copy.deepcopy(list(dataset['pipeline']))
        dataset = dataset.get('dataset')
    if cfg.get('test_pipeline') is not None:
        return copy.deepcopy(list(cfg.test_pipeline))
    raise ValueError('the config has no test pipeline '
                     '(test_dataloader.dataset...pipeline or test_pipeline)')


def inference_pipelines(pipeline: Sequence[dict],
                        flow_estimator: Union[str, dict, None] = None) -> dict:
    """The per-input pipelines made from a config's test pipeline.

    The config's sampling steps (before its decoder) and its spatial /
    formatting steps (after its decoder and ``ComputeFlow``) are kept; the
    reading in between is replaced per input kind.  Frames are resized to
    the short side of the first ``Resize(scale=(-1, S))`` before flow is
    computed (see the module doc).

    Args:
        pipeline: the config's test pipeline (a paired RGB + flow one, with
            ``SplitRGBFlow``, or an RGB one).
        flow_estimator: overrides the estimator: a type name (``'dis'``,
            ``'tvl1'``, ...) or a config; default: the config's
            ``ComputeFlow`` estimator, else DIS.

    Returns:
        dict: ``paired`` (whether the config has flow), ``estimator`` (the
        flow estimator config) and ``steps``: ``{(reader, with_flow):
        list of transform configs}`` for reader ``'decord'`` / ``'pyav'``
        (a video file, after its ``*Init``) and ``'frames'`` (a frame
        folder); ``with_flow`` only where ``paired``.
    """
    kinds = [_type(step) for step in pipeline]
    decode = [i for i, k in enumerate(kinds) if k in DECODE_STEPS]
    if not decode:
        raise ValueError(f'the test pipeline has no decode step '
                         f'({", ".join(DECODE_STEPS)}): {kinds}')
    first, last = decode[0], decode[-1]
    between = [k for k in kinds[first:last + 1] if k not in DECODE_STEPS]
    if between:
        raise ValueError(f'cannot adapt a test pipeline with {between} '
                         'between its decode steps')
    head = [
        dict(step) for step, k in zip(pipeline[:first], kinds)
        if not k.endswith('Init') and k != 'FlowPairIndices'
    ]
    tail = [dict(step) for step in pipeline[last + 1:]]
    paired = 'SplitRGBFlow' in kinds
    compute = [dict(s) for s, k in zip(pipeline, kinds) if k == 'ComputeFlow']
    if flow_estimator is not None:
        estimator = (
            dict(type=flow_estimator)
            if isinstance(flow_estimator, str) else dict(flow_estimator))
    elif compute and compute[0].get('estimator') is not None:
        estimator = dict(compute[0]['estimator'])
    else:
        estimator = dict(DEFAULT_FLOW_ESTIMATOR)
    bound = compute[0].get('bound', DEFAULT_FLOW_BOUND) if compute else \
        DEFAULT_FLOW_BOUND
    pre_resize = []
    for step in tail:
        if _type(step) == 'Resize':
            scale = tuple(step.get('scale', ()))
            if step.get('keep_ratio', True) and -1 in scale:
                pre_resize = [dict(step)]
            break

    rgb_tail = []
    for step in tail:
        kind = _type(step)
        if kind in PAIRING_STEPS:
            continue
        if kind == 'PairedFormatShape':
            step = dict(
                type='FormatShape',
                input_format=step.get('input_format', 'NCHW'))
        elif kind == 'PackActionInputs' and step.get('collect_keys'):
            step = dict(
                step,
                collect_keys=tuple(k for k in step['collect_keys']
                                   if k != 'flow'))
        rgb_tail.append(step)
    decoders = dict(
        decord=dict(type='DecordDecode'),
        pyav=dict(type='PyAVDecode'),
        frames=dict(type='RawFrameDecode'))
    steps = {}
    for reader, decoder in decoders.items():
        steps[reader, False] = (
            head + [dict(decoder)] + pre_resize +
            (rgb_tail if paired else tail))
        if paired:
            steps[reader, True] = (
                head + [dict(type='FlowPairIndices'),
                        dict(decoder)] + pre_resize +
                [dict(type='ComputeFlow', estimator=estimator, bound=bound)] +
                tail)
    return dict(paired=paired, estimator=estimator, steps=steps)


def _episode_sample(num_ways: int, num_shots: int) -> ActionDataSample:
    """An episode's metainfo: ``N`` ways, ``K`` shots, one query slot per
    class (what the recognisers' ``predict_episodes`` read)."""
    sample = ActionDataSample()
    sample.set_metainfo(
        dict(num_ways=num_ways, num_shots=num_shots, num_queries=1))
    return sample


class FewShotInferencer:
    """Recognise new actions from a few example clips per class.

    Args:
        config (str | Path | Config): an amfir-mm config (rawframe- or
            video-based, RGB + flow or RGB only).  A file that cannot be
            read, or whose model names an unregistered type, is a
            :class:`~amfir_mm.utils.config.ConfigError`.
        checkpoint (str, optional): a checkpoint of that config's model;
            ``None`` initialises the model (``init_weights``: pretrained
            backbones such as the EfficientNet-Lite0 config's get their
            ImageNet weights).  Loaded strictly: weights that do not fit
            the model are a :class:`CheckpointError`.
        device (str): ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...
        modalities (Sequence[str], optional): the modalities to use, a
            subset of the model's (default: all of them); ``('rgb',)``
            computes no flow and uses the RGB branch alone (its
            ``reliability`` is ``{'rgb': 1.0, 'flow': 0.0}``).
        flow_estimator (str | dict, optional): flow estimator type
            (``'dis'``, ``'tvl1'``, ``'farneback'``) or config; default: the
            one the config's ``ComputeFlow`` names, else DIS.
        batch_size (int): videos per backbone call.
        episode_batch_size (int): episodes per head call when predicting.
    """

    def __init__(self,
                 config: Union[str, Path, Config],
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu',
                 modalities: Optional[Sequence[str]] = None,
                 flow_estimator: Union[str, dict, None] = None,
                 batch_size: int = 8,
                 episode_batch_size: int = 16) -> None:
        cfg = (
            load_config(config)
            if isinstance(config, (str, Path)) else copy.deepcopy(config))
        if not isinstance(cfg, Config):
            raise TypeError(f'config must be a path or a Config, got '
                            f'{type(cfg).__name__}')
        if torch.device(device).type == 'cuda' and \
                not torch.cuda.is_available():
            raise UnsupportedDeviceError(
                f'device={device!r}, but torch.cuda.is_available() is False '
                f'(torch {torch.__version__}); use device=\'cpu\'')
        init_default_scope(cfg.get('default_scope', 'mmaction'))
        with config_errors_name(getattr(cfg, 'filename', None)):
            model = MODELS.build(cfg.model)
        if checkpoint is None:
            model.init_weights()
        else:
            if not osp.isfile(checkpoint):
                raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
            _load_exactly(model, checkpoint, getattr(cfg, 'filename', None))
        self.cfg = cfg
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.episode_batch_size = episode_batch_size

        if hasattr(model, 'branches'):  # AMFIRRecognizer
            self.branches = dict(model.branches.items())
        else:  # a single-modality FewShotRecognizer: an RGB model
            self.branches = dict(rgb=model)
        available = tuple(self.branches)
        wanted = tuple(modalities) if modalities else available
        unknown = [m for m in wanted if m not in available]
        if unknown or not wanted:
            raise ValueError(f'modalities {tuple(wanted)} are not a subset '
                             f'of the model\'s {available}')
        self.modalities = tuple(m for m in available if m in wanted)
        self.pipelines = inference_pipelines(
            _test_pipeline(cfg), flow_estimator)
        if 'flow' in self.branches and not self.pipelines['paired']:
            raise ValueError('the model has a flow branch but the config\'s '
                             'test pipeline has no flow (SplitRGBFlow)')
        self._composed: Dict[tuple, Compose] = {}
        self.classes: List[str] = []
        self.num_shots: Optional[int] = None
        self.support_paths: List[List[str]] = []
        self._support_feats: Optional[Dict[str, torch.Tensor]] = None

    # -- reading --------------------------------------------------------
    @property
    def flow_estimator(self) -> dict:
        """The config of the flow estimator in use."""
        return self.pipelines['estimator']

    def _compose(self, reader: str, with_flow: bool) -> Compose:
        key = (reader, with_flow)
        if key not in self._composed:
            self._composed[key] = Compose(
                copy.deepcopy(self.pipelines['steps'][key]))
        return self._composed[key]

    def _run(self, reader: str, results: dict) -> Tuple[dict, bool]:
        total = results['total_frames']
        if total < 1:
            raise FrameReadError('no frames')
        with_flow = ('flow' in self.modalities and self.pipelines['paired']
                     and total >= 2)
        data = self._compose(reader, with_flow)(results)
        if data is None:
            raise FrameReadError('the test pipeline dropped it')
        return data, with_flow

    def load(self, path: str) -> Tuple[dict, bool]:
        """One clip through the test pipeline.

        Args:
            path: a video file or a folder of frames.

        Returns:
            tuple: the packed sample (``inputs``: ``imgs`` ``(T, 3, H, W)``
            and, with flow, ``flow`` ``(T, 2, H, W)``, or one tensor for an
            RGB config) and whether it has flow (a clip of one frame, or
            ``modalities=('rgb',)``, has none).

        Raises:
            FrameReadError: the clip is missing or cannot be read (the
                message names it and says why).
        """
        path = str(path)
        if osp.isdir(path):
            try:
                tmpl, start = _frame_template(path)
                total = count_frames(path, tmpl, start)
                return self._run(
                    'frames',
                    dict(
                        frame_dir=path,
                        total_frames=total,
                        filename_tmpl=tmpl,
                        start_index=start,
                        modality='RGB',
                        offset=0))
            except Exception as err:
                raise _read_error(path, err) from err
        if not osp.isfile(path):
            raise FrameReadError(f'{path}: no such video file or frame '
                                 'folder')
        errors = []
        for reader, init in (('decord', 'DecordInit'), ('pyav', 'PyAVInit')):
            try:
                results = TRANSFORMS.build(dict(type=init))(
                    dict(filename=path, start_index=0, modality='RGB'))
                return self._run(reader, results)
            except Exception as err:
                errors.append(f'{reader}: {_why(err)}')
        raise FrameReadError(f'cannot read video {path} ({"; ".join(errors)})')

    # -- features -------------------------------------------------------
    @torch.no_grad()
    def _embed(self, samples: List[dict],
               modalities: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Per-frame features ``(B, T, C)`` of packed samples, per modality:
        the recogniser's ``embed_videos``, or, for some of an AMFIR model's
        modalities, those branches' ``extract_feat`` (as ``embed_videos``
        runs them)."""
        model, batch = self.model, pseudo_collate(samples)
        if not hasattr(model, 'branches'):
            return dict(rgb=model.embed_videos(batch))
        if tuple(modalities) == tuple(model.modalities):
            return model.embed_videos(batch)
        inputs = model.data_preprocessor(batch, False)['inputs']
        return {
            m:
            self.branches[m].extract_feat(
                inputs[model.input_keys[m]], test_mode=True)[0]
            for m in modalities
        }

    def _embed_clips(self, paths: Sequence[str], skip_unreadable: bool,
                     progress: bool
                     ) -> Tuple[List[Optional[dict]], Dict[str, str]]:
        """Features of each clip (``{modality: (T, C)}``, ``None`` where
        unreadable and ``skip_unreadable``) and the errors by path."""
        feats: List[Optional[dict]] = [None] * len(paths)
        errors: Dict[str, str] = {}
        pending: Dict[bool, List[Tuple[int, dict]]] = {True: [], False: []}
        bar = (
            ProgressBar(len(paths), file=sys.stdout)
            if progress and paths else None)

        def flush(with_flow: bool) -> None:
            if not pending[with_flow]:
                return
            mods = self.modalities if with_flow else [
                m for m in self.modalities if m != 'flow'
            ]
            index, samples = zip(*pending[with_flow])
            batch = self._embed(list(samples), mods)
            for b, i in enumerate(index):
                feats[i] = {m: f[b] for m, f in batch.items()}
            pending[with_flow].clear()

        for i, path in enumerate(paths):
            try:
                sample, with_flow = self.load(path)
            except FrameReadError as err:
                if not skip_unreadable:
                    raise
                errors[path] = str(err)
            else:
                if not with_flow and 'rgb' not in self.modalities:
                    err = FrameReadError(f'{path}: one frame, no flow, and '
                                         'the model has no RGB branch')
                    if not skip_unreadable:
                        raise err
                    errors[path] = str(err)
                else:
                    pending[with_flow].append((i, sample))
                    if len(pending[with_flow]) >= self.batch_size:
                        flush(with_flow)
            if bar is not None:
                bar.update()
        flush(True)
        flush(False)
        if bar is not None:
            bar.file.write('\n')
        return feats, errors

    # -- API --------------------------------------------------------------
    def fit(self,
            support: Dict[str, Union[str, Sequence[str]]],
            skip_unreadable: bool = False,
            progress: bool = False) -> 'FewShotInferencer':
        """Embed the example clips of each class, once.

        Args:
            support: class name -> its example clips (video files or frame
                folders); at least 2 classes.
            skip_unreadable: leave out unreadable clips (logged with their
                count) instead of stopping at the first.
            progress: show a progress bar.

        Raises:
            SupportError: fewer than 2 classes, a class without clips or
                without a readable one, or clip counts whose common
                multiple exceeds :data:`MAX_SHOTS`.
            FrameReadError: an unreadable clip (without ``skip_unreadable``),
                named in the message.
        """
        if len(support) < 2:
            raise SupportError(f'few-shot recognition needs at least 2 '
                               f'classes, got {len(support)}: '
                               f'{list(support)}')
        classes, paths = [], []
        for name, clips in support.items():
            clips = [clips] if isinstance(clips, (str, Path)) else \
                [str(c) for c in clips]
            if not clips:
                raise SupportError(f'class {name!r} has no example clips')
            classes.append(str(name))
            paths.append(clips)
        _common_shots([len(p) for p in paths])  # before the work
        flat = [p for clips in paths for p in clips]
        feats, errors = self._embed_clips(flat, skip_unreadable, progress)
        if errors:
            print_log(
                f'support: skipped {len(errors)} unreadable clips '
                f'(skip_unreadable): ' + '; '.join(list(errors.values())[:3]),
                logger='current',
                level=logging.WARNING)
        kept_paths, kept_feats, start = [], [], 0
        for name, clips in zip(classes, paths):
            own = feats[start:start + len(clips)]
            start += len(clips)
            good = [(p, f) for p, f in zip(clips, own) if f is not None]
            if not good:
                raise SupportError(f'class {name!r} has no readable clip '
                                   f'({len(clips)} unreadable)')
            missing_flow = [
                p for p, f in good if set(f) != set(self.modalities)
            ]
            if missing_flow:
                raise SupportError(
                    f'class {name!r}: {missing_flow[0]} has one frame, so no '
                    'flow; support clips need >= 2 frames (or use '
                    "modalities=('rgb',))")
            kept_paths.append([p for p, _ in good])
            kept_feats += [f for _, f in good]
        counts = [len(p) for p in kept_paths]
        shots = _common_shots(counts)
        self.classes, self.support_paths = classes, kept_paths
        self.num_shots = shots
        self._support_feats = {
            m: torch.stack([f[m] for f in kept_feats])
            for m in self.modalities
        }
        # support video indices of one episode, class-major, each class's
        # clips repeated to `shots`
        index, start = [], 0
        for count in counts:
            index += [start + s % count for s in range(shots)]
            start += count
        self._support_index = torch.as_tensor(index)
        return self

    def predict(self,
                queries: Union[str, Iterable[str]],
                on_error: str = 'raise',
                progress: bool = False) -> List[dict]:
        """Label each query clip with one of the support classes.

        Args:
            queries: video files or frame folders.
            on_error: ``'raise'`` (:class:`FrameReadError` naming the
                first unreadable query) or ``'report'``: an unreadable
                query gives ``{'query': path, 'error': message}`` and the
                others are still predicted.
            progress: show a progress bar.

        Returns:
            list[dict]: one per query, in order: ``query``, ``label`` (the
            most probable class), ``scores`` (class -> probability, sums to
            1), ``reliability`` (``{'rgb': pi_rgb, 'flow': pi_flow}``) and
            ``modality_scores`` (modality -> class -> probability, for the
            modalities used).
        """
        if self._support_feats is None:
            raise RuntimeError('call fit(support) before predict(queries)')
        if on_error not in ('raise', 'report'):
            raise ValueError(f"on_error must be 'raise' or 'report', got "
                             f'{on_error!r}')
        queries = [queries] if isinstance(queries, (str, Path)) else \
            [str(q) for q in queries]
        feats, errors = self._embed_clips(queries, on_error == 'report',
                                          progress)
        results: List[Optional[dict]] = [
            dict(query=q, error=errors[q]) if f is None else None
            for q, f in zip(queries, feats)
        ]
        good = [i for i, f in enumerate(feats) if f is not None]
        if good:
            for i, out in zip(good, self._score([feats[i] for i in good])):
                results[i] = dict(query=queries[i], **out)
        return results

    # -- scoring ----------------------------------------------------------
    @torch.no_grad()
    def _score(self, query_feats: List[dict]) -> List[dict]:
        """Scores of queries with features ``{modality: (T, C)}`` through
        the model's cached episode path."""
        support = self._support_feats
        num_support = next(iter(support.values())).shape[0]
        all_feats = {}
        for m in self.modalities:
            rows = [
                f[m] if m in f else torch.zeros_like(support[m][0])
                for f in query_feats
            ]
            all_feats[m] = torch.cat([support[m], torch.stack(rows)])
        full = [
            i for i, f in enumerate(query_feats)
            if set(f) == set(self.modalities)
        ]
        missing = [
            i for i, f in enumerate(query_feats)
            if set(f) != set(self.modalities)
        ]
        out: List[Optional[dict]] = [None] * len(query_feats)
        caches = None
        if len(self.modalities) > 1:
            if full:  # the whole model: branches, ASI, AMI
                caches = self.model.cache_videos(all_feats)
                self._run_episodes(full, num_support, out, self.model, caches,
                                   self.modalities)
            single, m = missing, 'rgb'  # no flow: the RGB branch alone
        else:
            single, m = full + missing, self.modalities[0]
        if single:
            cache = (
                caches[m]['head'] if caches is not None else
                self.branches[m].cache_videos(all_feats[m]))
            self._run_episodes(single, num_support, out, self.branches[m],
                               cache, (m, ))
        return out

    def _run_episodes(self, queries: List[int], num_support: int,
                      out: List[Optional[dict]], recognizer, cache,
                      modalities: Tuple[str, ...]) -> None:
        """Fill ``out[q]`` for the queries ``q`` (positions among the
        queries) with ``recognizer.predict_episodes`` on ``cache``: each
        episode is the support plus ``N`` queries (padded with its first)."""
        num_ways = len(self.classes)
        for start in range(0, len(queries),
                           num_ways * self.episode_batch_size):
            chunk = queries[start:start + num_ways * self.episode_batch_size]
            slots = [
                chunk[i:i + num_ways] for i in range(0, len(chunk), num_ways)
            ]
            slots = [s + [s[0]] * (num_ways - len(s)) for s in slots]
            video_index = torch.stack([
                torch.cat(
                    [self._support_index,
                     torch.as_tensor(s) + num_support]) for s in slots
            ])
            samples = [
                _episode_sample(num_ways, self.num_shots) for _ in slots
            ]
            samples = recognizer.predict_episodes(
                cache, samples, video_index=video_index)
            for s, sample in zip(slots, samples):
                for row, q in enumerate(s):
                    if out[q] is None:
                        out[q] = self._result(sample, row, modalities)

    def _result(self, sample: ActionDataSample, row: int,
                modalities: Tuple[str, ...]) -> dict:

        def named(probs: torch.Tensor) -> Dict[str, float]:
            return {c: float(p) for c, p in zip(self.classes, probs.tolist())}

        scores = sample.pred_score[row]
        if len(modalities) > 1:
            pi = sample.reliability[row].tolist()
            reliability = dict(rgb=pi[0], flow=pi[1])
            per_modality = {
                m: named(sample.get(f'{m}_score')[row])
                for m in modalities
            }
        else:
            reliability = {
                m: float(m == modalities[0])
                for m in ('rgb', 'flow')
            }
            per_modality = {modalities[0]: named(scores)}
        return dict(
            label=self.classes[int(scores.argmax())],
            scores=named(scores),
            reliability=reliability,
            modality_scores=per_modality)


def _load_exactly(model: torch.nn.Module, checkpoint: str,
                  config: Optional[str]) -> None:
    """MMEngine's ``load_checkpoint`` with ``strict=True``: weights that do
    not fit are an error, not a model left half at its initial weights."""
    try:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    except RuntimeError as err:
        text = str(err)
        if 'do not match exactly' not in text:
            raise
        problems = [line for line in text.splitlines()[1:] if line.strip()]
        raise CheckpointError(
            f'{checkpoint} does not fit the model of '
            f'{config or "the config"}: {problems[0][:300]}'
            f'{" ..." if len(problems) > 1 or len(problems[0]) > 300 else ""}'
        ) from err


def _common_shots(counts: List[int]) -> int:
    """The shots per class of the episodes: the least common multiple of
    the classes' clip counts (each class's clips repeated to it)."""
    shots = reduce(lambda a, b: a * b // math.gcd(a, b), counts)
    if shots > MAX_SHOTS:
        raise SupportError(
            f'classes with {sorted(set(counts))} clips: the episode repeats '
            f'each class\'s clips to a common count, here {shots} > '
            f'{MAX_SHOTS}; give the classes the same number of clips')
    return shots


def _why(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f'{type(err).__name__}: {text[0] if text else ""}'.rstrip(': ')


def _read_error(path: str, err: Exception) -> FrameReadError:
    if isinstance(err, FrameReadError) and path in str(err):
        return err
    return FrameReadError(f'cannot read {path} ({_why(err)})')
