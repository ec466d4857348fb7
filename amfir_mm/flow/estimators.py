"""Optical flow estimators behind one interface.

Every estimator takes two uint8 RGB frames of shape ``(H, W, 3)`` and returns
the flow from the first to the second as a float32 ``(H, W, 2)`` array in
pixels, x (to the right) then y (down)::

    estimator = build_flow_estimator(dict(type='DISFlowEstimator'))
    flow = estimator(frame1, frame2)          # (H, W, 2) float32, pixels

Registry: estimators are registered in their own registry,
:data:`amfir_mm.registry.FLOW_ESTIMATORS` (they are not ``nn.Module`` s, so
not in MMAction2's ``MODELS``); a config names them by ``type=`` as usual
(``dict(type='ComputeFlow', estimator=dict(type='DISFlowEstimator'))``) and
:func:`build_flow_estimator` builds them under the ``amfir_mm`` scope, so the
runner's ``mmaction`` default scope does not hide them.

Available types: ``TVL1FlowEstimator`` (default), ``FarnebackFlowEstimator``,
``DISFlowEstimator`` (OpenCV, CPU) and ``MMFlowEstimator`` (MMFlow networks
such as RAFT, CPU or CUDA; see :mod:`amfir_mm.flow.mmflow_estimator`).
"""
from abc import ABCMeta, abstractmethod
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
from mmengine.registry import DefaultScope

from ..registry import FLOW_ESTIMATORS


def check_frame_pair(frame1: np.ndarray, frame2: np.ndarray) -> None:
    """Raise ``ValueError`` unless both frames are same-shape uint8 RGB."""
    for name, frame in (('frame1', frame1), ('frame2', frame2)):
        if not isinstance(frame, np.ndarray):
            raise TypeError(f'{name} must be a numpy array, got {type(frame)}')
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'{name} must be a uint8 (H, W, 3) RGB image, '
                             f'got dtype {frame.dtype} shape {frame.shape}')
    if frame1.shape != frame2.shape:
        raise ValueError('frame1 and frame2 must have the same shape, got '
                         f'{frame1.shape} and {frame2.shape}')


def check_frame_pairs(firsts: Sequence[np.ndarray],
                      seconds: Sequence[np.ndarray]) -> None:
    """:func:`check_frame_pair` for every pair of two equally long lists."""
    if len(firsts) != len(seconds):
        raise ValueError(f'got {len(firsts)} first frames but '
                         f'{len(seconds)} second frames')
    for frame1, frame2 in zip(firsts, seconds):
        check_frame_pair(frame1, frame2)


class BaseFlowEstimator(metaclass=ABCMeta):
    """Interface: two ``(H, W, 3)`` uint8 RGB frames -> ``(H, W, 2)`` flow.

    Subclasses implement :meth:`estimate`. :meth:`estimate_pairs` may be
    overridden to batch several pairs (``batch_size`` tells callers how many
    pairs to hand over at once).
    """

    #: How many frame pairs callers should pass to :meth:`estimate_pairs`.
    batch_size: int = 1

    def __call__(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """Flow from ``frame1`` to ``frame2``.

        Args:
            frame1 (np.ndarray): ``(H, W, 3)`` uint8 RGB frame at time t.
            frame2 (np.ndarray): ``(H, W, 3)`` uint8 RGB frame at time t+1.

        Returns:
            np.ndarray: ``(H, W, 2)`` float32 flow in pixels, x then y.
        """
        return self.estimate_pairs([frame1], [frame2])[0]

    def estimate_pairs(self, firsts: Sequence[np.ndarray],
                       seconds: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Flow for each pair ``(firsts[i], seconds[i])``.

        Returns:
            list[np.ndarray]: ``(H, W, 2)`` float32 flows in pixels.
        """
        check_frame_pairs(firsts, seconds)
        return [
            self._as_flow(self.estimate(frame1, frame2), frame1)
            for frame1, frame2 in zip(firsts, seconds)
        ]

    @abstractmethod
    def estimate(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """Estimate flow for one validated pair (see :meth:`__call__`)."""

    @staticmethod
    def _as_flow(flow: np.ndarray, frame: np.ndarray) -> np.ndarray:
        expected = frame.shape[:2] + (2, )
        if flow.shape != expected:
            raise RuntimeError(f'estimator returned flow of shape '
                               f'{flow.shape}, expected {expected}')
        return np.ascontiguousarray(flow, dtype=np.float32)

    def __repr__(self) -> str:
        params = ', '.join(f'{k}={v!r}' for k, v in self._repr_params())
        return f'{self.__class__.__name__}({params})'

    def _repr_params(self) -> list:
        return []


class _OpenCVFlowEstimator(BaseFlowEstimator):
    """OpenCV estimators work on 8-bit grey images."""

    def estimate(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        grey1 = cv2.cvtColor(frame1, cv2.COLOR_RGB2GRAY)
        grey2 = cv2.cvtColor(frame2, cv2.COLOR_RGB2GRAY)
        return self.estimate_grey(grey1, grey2)

    @abstractmethod
    def estimate_grey(self, grey1: np.ndarray,
                      grey2: np.ndarray) -> np.ndarray:
        """Flow between two ``(H, W)`` uint8 grey images."""

    def __getstate__(self) -> dict:
        # OpenCV algorithm objects cannot be pickled; rebuild them lazily.
        state = self.__dict__.copy()
        state['_algorithm'] = None
        return state


@FLOW_ESTIMATORS.register_module()
class TVL1FlowEstimator(_OpenCVFlowEstimator):
    """Dual TV-L1 flow (``cv2.optflow.DualTVL1OpticalFlow_create``).

    The classic flow for two-stream action recognition (what ``denseflow``
    computes). Slow on CPU: ~375 ms per 224x224 pair with the defaults below
    (OpenCV's), ~200 ms with ``nscales=3, warps=3, epsilon=0.02``.

    Args:
        nscales (int): Number of pyramid scales.
        warps (int): Warpings per scale.
        epsilon (float): Stopping threshold of the inner solver.
        **kwargs: Other ``DualTVL1OpticalFlow_create`` arguments, e.g. ``tau``,
            ``lambda_``, ``theta``, ``innerIterations``, ``scaleStep``.
    """

    def __init__(self,
                 nscales: int = 5,
                 warps: int = 5,
                 epsilon: float = 0.01,
                 **kwargs) -> None:
        if not hasattr(cv2, 'optflow'):
            raise ImportError(
                'TVL1FlowEstimator needs cv2.optflow, which only '
                'opencv-contrib-python has: pip install --no-deps '
                '--force-reinstall opencv-contrib-python==5.0.0.93 (see '
                '"Why these pins" in README.md)')
        self.nscales = int(nscales)
        self.warps = int(warps)
        self.epsilon = float(epsilon)
        self.kwargs = kwargs
        self._algorithm = None

    def estimate_grey(self, grey1: np.ndarray,
                      grey2: np.ndarray) -> np.ndarray:
        if self._algorithm is None:
            self._algorithm = cv2.optflow.DualTVL1OpticalFlow_create(
                nscales=self.nscales,
                warps=self.warps,
                epsilon=self.epsilon,
                **self.kwargs)
        return self._algorithm.calc(grey1, grey2, None)

    def _repr_params(self) -> list:
        return [('nscales', self.nscales), ('warps', self.warps),
                ('epsilon', self.epsilon)] + sorted(self.kwargs.items())


@FLOW_ESTIMATORS.register_module()
class FarnebackFlowEstimator(_OpenCVFlowEstimator):
    """Farneback polynomial-expansion flow (``cv2.calcOpticalFlowFarneback``).

    Args are those of OpenCV (defaults from its tutorial): ``pyr_scale``,
    ``levels``, ``winsize`` (pixels), ``iterations``, ``poly_n``,
    ``poly_sigma`` and ``flags``.
    """

    def __init__(self,
                 pyr_scale: float = 0.5,
                 levels: int = 3,
                 winsize: int = 15,
                 iterations: int = 3,
                 poly_n: int = 5,
                 poly_sigma: float = 1.2,
                 flags: int = 0) -> None:
        self.params = dict(
            pyr_scale=pyr_scale,
            levels=levels,
            winsize=winsize,
            iterations=iterations,
            poly_n=poly_n,
            poly_sigma=poly_sigma,
            flags=flags)

    def estimate_grey(self, grey1: np.ndarray,
                      grey2: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(grey1, grey2, None, **self.params)

    def _repr_params(self) -> list:
        return list(self.params.items())


@FLOW_ESTIMATORS.register_module()
class DISFlowEstimator(_OpenCVFlowEstimator):
    """Dense Inverse Search flow (``cv2.DISOpticalFlow_create``); fastest.

    Args:
        preset (str): ``'ultrafast'``, ``'fast'`` or ``'medium'``.
    """

    PRESETS = {
        'ultrafast': cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        'fast': cv2.DISOPTICAL_FLOW_PRESET_FAST,
        'medium': cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }

    def __init__(self, preset: str = 'medium') -> None:
        if preset not in self.PRESETS:
            raise ValueError(f'DIS preset must be one of '
                             f'{sorted(self.PRESETS)}, got {preset!r}')
        self.preset = preset
        self._algorithm = None

    def estimate_grey(self, grey1: np.ndarray,
                      grey2: np.ndarray) -> np.ndarray:
        if self._algorithm is None:
            self._algorithm = cv2.DISOpticalFlow_create(
                self.PRESETS[self.preset])
        return self._algorithm.calc(grey1, grey2, None)

    def _repr_params(self) -> list:
        return [('preset', self.preset)]


#: Short names accepted by :func:`build_flow_estimator` and the CLI.
METHOD_ALIASES = {
    'tvl1': 'TVL1FlowEstimator',
    'farneback': 'FarnebackFlowEstimator',
    'dis': 'DISFlowEstimator',
    'mmflow': 'MMFlowEstimator',
}

FlowEstimatorCfg = Optional[Union[str, dict, BaseFlowEstimator]]


def build_flow_estimator(cfg: FlowEstimatorCfg = None) -> BaseFlowEstimator:
    """Build a flow estimator.

    Args:
        cfg (None | str | dict | BaseFlowEstimator): ``None`` gives
            :class:`TVL1FlowEstimator` with its defaults; a string is a short
            name (``'tvl1'``, ``'farneback'``, ``'dis'``) or a registered type
            name; a dict is a config with ``type`` built from
            :data:`amfir_mm.registry.FLOW_ESTIMATORS`; an estimator is
            returned as is.

    Returns:
        BaseFlowEstimator: The estimator.
    """
    if cfg is None:
        return TVL1FlowEstimator()
    if isinstance(cfg, BaseFlowEstimator):
        return cfg
    if isinstance(cfg, str):
        cfg = dict(type=cfg)
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError('flow estimator config must be None, a name, an '
                        f'estimator or a dict with "type", got {cfg!r}')
    cfg = dict(cfg)
    cfg['type'] = METHOD_ALIASES.get(cfg['type'], cfg['type'])
    # The registry's own scope: under a runner the default scope is
    # ``mmaction``, whose registry tree does not hold flow estimators.
    with DefaultScope.overwrite_default_scope(FLOW_ESTIMATORS.scope):
        estimator = FLOW_ESTIMATORS.build(cfg)
    if not isinstance(estimator, BaseFlowEstimator):
        raise TypeError(f'{cfg["type"]} is not a flow estimator '
                        f'(got {type(estimator).__name__})')
    return estimator
