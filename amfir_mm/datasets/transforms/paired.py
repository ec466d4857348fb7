"""Paired RGB + optical-flow clips for two-branch recognisers.

One sample yields an RGB clip and a flow clip at the SAME frame indices,
through the SAME spatial augmentation, packed as ``inputs['imgs']``
``(T, 3, H, W)`` and ``inputs['flow']`` ``(T, 2, H, W)`` float32.

Flow values stay in MMAction2's quantised rawframe range 0..255 (``128 ~ 0
px``; ``value = round((clip(f, -bound, bound) + bound) * 255 / (2 *
bound))``, see :mod:`amfir_mm.flow.quantization`), from rawframes or
computed on the fly alike. Normalise in the data preprocessor, e.g.
``ActionDataPreprocessor(mean=[128, 128], std=[128, 128])``. Spatial
resizing does not rescale the flow values (as in MMAction2 two-stream
models): they stay in pixels of the stored / decoded resolution.

Edge rule: flow field ``k`` goes from frame ``k`` to ``k + 1``; a video of N
RGB frames has ``N - 1`` fields. RGB frame ``i`` is paired with field
``min(i, last_flow)``, i.e. the flow *leaving* frame i, and for the last
frame the flow *entering* it (indices in the frame numbering, so with
``start_index=1`` fields are ``x_/y_00001 .. N-1`` and frame N uses N-1).

How the spatial augmentation is shared: :class:`StackRGBFlow` concatenates
each frame's RGB and flow into one ``(H, W, 5)`` image, MMAction2's own
``RandomResizedCrop`` / ``MultiScaleCrop`` / ``Resize`` / ``CenterCrop`` /
``Flip`` then act on both at once, and :class:`SplitRGBFlow` separates them
and negates flow-x of horizontally flipped samples (flow-y of vertically
flipped ones) as ``255 - value``, which is exactly ``-flow`` after
dequantisation. Put photometric RGB augmentations after
:class:`SplitRGBFlow`; ``lazy=True`` and ``TenCrop`` are not supported.

Example training pipeline (rawframes written by ``tools/extract_flow.py
--write-rgb``; data_info as MMAction2's ``RawframeDataset`` gives it:
``frame_dir``, ``total_frames`` (RGB frames), ``filename_tmpl='img_{:05d}
.jpg'``, ``start_index=1``, ``label``, ``modality='RGB'``)::

    train_pipeline = [
        dict(type='SampleFrames', clip_len=8, frame_interval=1,
             num_clips=1),
        dict(type='PairedRawFrameDecode'),  # flow_prefix=... if elsewhere
        dict(type='StackRGBFlow'),
        dict(type='RandomResizedCrop'),
        dict(type='Resize', scale=(224, 224), keep_ratio=False),
        dict(type='Flip', flip_ratio=0.5),
        dict(type='SplitRGBFlow'),
        dict(type='PairedFormatShape', input_format='NCHW'),
        dict(type='PackActionInputs', collect_keys=('imgs', 'flow')),
    ]

On-the-fly flow from a video (or an RGB-only frame folder: use
``RawFrameDecode`` instead of ``DecordInit``/``DecordDecode``), replacing
the first two steps::

        dict(type='DecordInit'),
        dict(type='SampleFrames', clip_len=8, frame_interval=1,
             num_clips=1),
        dict(type='FlowPairIndices'),
        dict(type='DecordDecode'),
        dict(type='ComputeFlow', estimator=dict(type='DISFlowEstimator')),
"""
import os.path as osp
from typing import Optional

import numpy as np
from mmaction.datasets.transforms import FormatShape
from mmaction.registry import TRANSFORMS
from mmcv.transforms import BaseTransform

from ...flow import build_flow_estimator, quantize_flow
from .decode import CheckedRawFrameDecode

__all__ = [
    'PairedRawFrameDecode', 'FlowPairIndices', 'ComputeFlow', 'StackRGBFlow',
    'SplitRGBFlow', 'FlowMagnitudeImage', 'PairedFormatShape',
    'paired_flow_indices'
]


def paired_flow_indices(frame_inds: np.ndarray, start_index: int,
                        num_flows: int) -> np.ndarray:
    """Flow field index for each RGB frame index (the edge rule).

    Args:
        frame_inds (np.ndarray): RGB frame indices (in the file numbering,
            i.e. including ``start_index``).
        start_index (int): Index of the first frame (and flow field).
        num_flows (int): Number of flow fields (RGB frames - 1).

    Returns:
        np.ndarray: ``min(frame_inds, start_index + num_flows - 1)``.
    """
    if num_flows < 1:
        raise ValueError(f'no flow fields (num_flows={num_flows}); a video '
                         'needs at least 2 frames')
    frame_inds = np.asarray(frame_inds)
    if frame_inds.size and frame_inds.min() < start_index:
        raise ValueError(f'frame index {frame_inds.min()} is below '
                         f'start_index {start_index}')
    return np.minimum(frame_inds, start_index + num_flows - 1)


@TRANSFORMS.register_module()
class PairedRawFrameDecode(BaseTransform):
    """Decode RGB rawframes and flow rawframes at the same indices.

    Required keys: ``frame_dir``, ``filename_tmpl``, ``frame_inds``,
    ``total_frames``, ``start_index``; optional ``offset``, ``flow_dir``
    (overrides the prefix rule), ``total_flow_frames`` (default
    ``total_frames - 1``).

    Added keys: ``imgs`` (list of ``(H, W, 3)`` uint8 RGB), ``flow`` (list
    of ``(H, W, 2)`` uint8 quantised x, y), ``flow_inds``, ``flow_dir``,
    ``img_shape``, ``original_shape``.

    Args:
        flow_prefix (str, optional): Root of the flow frames when it is not
            the RGB folder. The flow folder is ``flow_prefix`` joined with
            ``frame_dir`` relative to ``rgb_prefix`` (or with ``frame_dir``
            itself when ``rgb_prefix`` is None and ``frame_dir`` relative).
        rgb_prefix (str, optional): Root of the RGB frames (the dataset's
            ``data_prefix['img']``).
        flow_tmpl (str): Flow file names, ``'{}_{:05d}.jpg'`` -> x_00001.jpg.
        **kwargs: Passed to MMAction2's ``RawFrameDecode`` (used for both,
            as :class:`CheckedRawFrameDecode`: an undecodable frame file is
            an ``UnreadableFrameError`` naming it).
    """

    def __init__(self,
                 flow_prefix: Optional[str] = None,
                 rgb_prefix: Optional[str] = None,
                 flow_tmpl: str = '{}_{:05d}.jpg',
                 **kwargs) -> None:
        self.flow_prefix = flow_prefix
        self.rgb_prefix = rgb_prefix
        self.flow_tmpl = flow_tmpl
        self.decoder = CheckedRawFrameDecode(**kwargs)

    def flow_dir(self, results: dict) -> str:
        """The folder holding the flow frames of this sample."""
        if 'flow_dir' in results:
            return results['flow_dir']
        frame_dir = results['frame_dir']
        if self.flow_prefix is None:
            return frame_dir
        if self.rgb_prefix is not None:
            rel = osp.relpath(frame_dir, self.rgb_prefix)
            if rel.startswith('..'):
                raise ValueError(f'frame_dir {frame_dir} is not inside '
                                 f'rgb_prefix {self.rgb_prefix}')
            return osp.join(self.flow_prefix, rel)
        if osp.isabs(frame_dir):
            raise ValueError(f'frame_dir {frame_dir} is absolute: set '
                             'rgb_prefix to map it under flow_prefix')
        return osp.join(self.flow_prefix, frame_dir)

    def _decode(self, folder: str, tmpl: str, inds, modality: str,
                results: dict) -> list:
        sub = dict(
            frame_dir=folder,
            filename_tmpl=tmpl,
            modality=modality,
            frame_inds=np.asarray(inds),
            offset=results.get('offset', 0))
        try:
            frames = self.decoder.transform(sub)['imgs']
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f'{modality} frame missing in {folder}: {err}') from err
        return frames

    def transform(self, results: dict) -> dict:
        frame_inds = np.asarray(results['frame_inds']).reshape(-1)
        start_index = results.get('start_index', 1)
        num_flows = results.get('total_flow_frames',
                                results['total_frames'] - 1)
        flow_inds = paired_flow_indices(frame_inds, start_index, num_flows)
        flow_dir = self.flow_dir(results)
        imgs = self._decode(results['frame_dir'], results['filename_tmpl'],
                            frame_inds, 'RGB', results)
        flow = self._decode(flow_dir, self.flow_tmpl, flow_inds, 'Flow',
                            results)
        if imgs[0].shape[:2] != flow[0].shape[:2]:
            raise ValueError(
                f'RGB frames of {results["frame_dir"]} are '
                f'{imgs[0].shape[1]}x{imgs[0].shape[0]} but flow frames of '
                f'{flow_dir} are {flow[0].shape[1]}x{flow[0].shape[0]}')
        results.update(
            imgs=imgs,
            flow=flow,
            frame_inds=frame_inds,
            flow_inds=flow_inds,
            flow_dir=flow_dir,
            img_shape=imgs[0].shape[:2],
            original_shape=imgs[0].shape[:2])
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(flow_prefix={self.flow_prefix!r}'
                f', rgb_prefix={self.rgb_prefix!r}, '
                f'flow_tmpl={self.flow_tmpl!r})')


@TRANSFORMS.register_module()
class FlowPairIndices(BaseTransform):
    """Before a decoder: also decode the frames each flow pair needs.

    Keeps the sampled indices in ``rgb_frame_inds`` and sets ``frame_inds``
    to the sorted union of every frame ``i`` and its pair ``(j, j + 1)``,
    ``j = min(i, last - 1)`` (the edge rule). Use :class:`ComputeFlow` after
    the decoder. Required keys: ``frame_inds``, ``total_frames``,
    ``start_index`` (0 for videos, 1 for frame folders).
    """

    def transform(self, results: dict) -> dict:
        frame_inds = np.asarray(results['frame_inds']).reshape(-1)
        start_index = results.get('start_index', 0)
        pair_firsts = paired_flow_indices(frame_inds, start_index,
                                          results['total_frames'] - 1)
        results['rgb_frame_inds'] = frame_inds
        results['flow_inds'] = pair_firsts
        results['frame_inds'] = np.unique(
            np.concatenate([frame_inds, pair_firsts, pair_firsts + 1]))
        return results


@TRANSFORMS.register_module()
class ComputeFlow(BaseTransform):
    """After a decoder: compute the paired flow of each sampled frame.

    Required keys: ``imgs`` (decoded at the ``frame_inds`` set by
    :class:`FlowPairIndices`), ``rgb_frame_inds``, ``flow_inds``.
    Modified keys: ``imgs`` and ``frame_inds`` (back to the sampled
    frames). Added key: ``flow`` (list of ``(H, W, 2)`` uint8, quantised
    like the rawframes).

    Args:
        estimator (dict, optional): Flow estimator config (default TV-L1,
            see :func:`amfir_mm.flow.build_flow_estimator`); built lazily in
            each data-loader worker.
        bound (float): Quantisation bound in pixels.
    """

    def __init__(self,
                 estimator: Optional[dict] = None,
                 bound: float = 20.0) -> None:
        self.estimator_cfg = estimator
        self.bound = bound
        self._estimator = None

    def transform(self, results: dict) -> dict:
        if self._estimator is None:
            self._estimator = build_flow_estimator(self.estimator_cfg)
        decoded = dict(zip(results['frame_inds'].tolist(), results['imgs']))
        cache = {}
        flow = []
        for first in results['flow_inds'].tolist():
            if first not in cache:
                field = self._estimator(decoded[first], decoded[first + 1])
                cache[first] = np.stack(
                    quantize_flow(field, self.bound), axis=-1)
            flow.append(cache[first])
        results['frame_inds'] = results.pop('rgb_frame_inds')
        results['imgs'] = [decoded[i] for i in results['frame_inds'].tolist()]
        results['flow'] = flow
        return results

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state['_estimator'] = None  # rebuilt in each worker
        return state

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(estimator={self.estimator_cfg!r}'
                f', bound={self.bound})')


@TRANSFORMS.register_module()
class StackRGBFlow(BaseTransform):
    """Concatenate RGB and flow per frame so spatial transforms share.

    ``imgs`` (list of ``(H, W, 3)``) + ``flow`` (list of ``(H, W, 2)``)
    -> ``imgs`` (list of ``(H, W, 5)`` uint8: R, G, B, flow-x, flow-y);
    ``flow`` is removed and ``modality`` set to ``'RGB'`` (MMAction2's
    ``Flip`` has a ``'Flow'`` branch for the old one-channel layout).
    """

    def transform(self, results: dict) -> dict:
        imgs, flow = results['imgs'], results.pop('flow')
        if len(imgs) != len(flow):
            raise ValueError(f'{len(imgs)} RGB frames but {len(flow)} flow '
                             'fields')
        results['imgs'] = [
            np.concatenate([rgb, fl], axis=-1) for rgb, fl in zip(imgs, flow)
        ]
        results['modality'] = 'RGB'
        return results


@TRANSFORMS.register_module()
class SplitRGBFlow(BaseTransform):
    """Undo :class:`StackRGBFlow` after the spatial transforms.

    ``imgs`` (list of ``(H, W, 5)``) -> ``imgs`` (list of ``(H, W, 3)``) and
    ``flow`` (list of ``(H, W, 2)``). If ``Flip`` flipped the sample
    (``results['flip']``), flow-x (horizontal) or flow-y (vertical) becomes
    ``255 - value``: the negated flow in the quantised 0..255 space.
    """

    def transform(self, results: dict) -> dict:
        if results.get('lazy', {}).get('flip'):
            raise RuntimeError('SplitRGBFlow needs flips applied: run Fuse '
                               'before it or use lazy=False')
        stacked = results['imgs']
        if not len(stacked) or np.asarray(stacked[0]).shape[-1] != 5:
            raise ValueError('SplitRGBFlow expects imgs of (H, W, 5) frames '
                             'made by StackRGBFlow')
        results['imgs'] = [np.ascontiguousarray(f[..., :3]) for f in stacked]
        flow = [np.array(f[..., 3:]) for f in stacked]
        if results.get('flip', False):
            axis = 0 if results.get('flip_direction',
                                    'horizontal') == 'horizontal' else 1
            for field in flow:
                field[..., axis] = 255 - field[..., axis]
        results['flow'] = flow
        return results


@TRANSFORMS.register_module()
class FlowMagnitudeImage(BaseTransform):
    """Turn each 2-channel flow field into an ``(x, y, magnitude)`` image.

    ``flow`` (list of ``(H, W, 2)`` quantised 0..255 fields, ``128 = 0 px``)
    -> list of ``(H, W, 3)`` uint8: flow-x, flow-y and the magnitude
    ``min(255, 2 * sqrt((x - 128)^2 + (y - 128)^2))`` (0 = still, 255 = the
    quantisation bound).  A 3-channel flow image can go through an
    unmodified ImageNet stem (``in_channels=3`` for the flow branch), which
    keeps the pretrained filters' channel selectivity; the 2-channel TSN
    cross-modality stem instead sums flow-x and flow-y, so a frozen stem
    cannot tell their directions apart.  Place after :class:`SplitRGBFlow`.
    """

    def transform(self, results: dict) -> dict:
        images = []
        for field in results['flow']:
            centred = np.asarray(field, dtype=np.float32) - 128
            magnitude = np.minimum(
                255, 2 * np.sqrt((centred**2).sum(-1, keepdims=True)))
            images.append(
                np.concatenate([
                    np.asarray(field, dtype=np.uint8),
                    np.rint(magnitude).astype(np.uint8)
                ],
                               axis=-1))
        results['flow'] = images
        return results


@TRANSFORMS.register_module()
class PairedFormatShape(BaseTransform):
    """MMAction2's ``FormatShape`` applied to ``imgs`` and ``flow``.

    With ``input_format='NCHW'``: ``imgs`` ``(N, 3, H, W)`` and ``flow``
    ``(N, 2, H, W)`` with ``N = num_crops * num_clips * clip_len``;
    ``'NCTHW'``: ``(M, C, T, H, W)``. Values: RGB 0..255, flow quantised
    0..255 (float32 when ``to_float32``).
    """

    def __init__(self,
                 input_format: str = 'NCHW',
                 to_float32: bool = True) -> None:
        self.formatter = FormatShape(input_format)
        self.to_float32 = to_float32

    def transform(self, results: dict) -> dict:
        for key in ('imgs', 'flow'):
            sub = dict(
                imgs=results[key],
                modality='RGB',
                num_clips=results.get('num_clips', 1),
                clip_len=results.get('clip_len', len(results[key])))
            formatted = self.formatter.transform(sub)['imgs']
            if self.to_float32:
                formatted = formatted.astype(np.float32)
            results[key] = formatted
            results['input_shape' if key == 'imgs' else 'flow_shape'] = \
                formatted.shape
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(input_format='
                f'{self.formatter.input_format!r}, '
                f'to_float32={self.to_float32})')
