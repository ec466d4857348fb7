"""MMFlow 1.0.0rc0 networks (RAFT, ...) behind :class:`BaseFlowEstimator`.

Example::

    estimator = build_flow_estimator(dict(
        type='MMFlowEstimator',
        config='mmflow::raft/raft_8xb2_100k_mixed-368x768.py',
        checkpoint='raft_8x2_100k_mixed_368x768.pth',
        device='cuda'))

MMFlow models are built in the ``mmflow`` default scope (they are not in
MMAction2's model registry) with :func:`amfir_mm.compat.import_mmflow_models`
so that ``mmcv-lite`` suffices for RAFT. Models that need compiled MMCV ops
(PWC-Net, FlowNetC, LiteFlowNet: ``Correlation``; MaskFlowNet:
``DeformConv2d``) fail at construction with a one-line error.

Images are fed the way MMFlow's own test pipelines do: BGR ``uint8`` (as
``mmcv.imread`` loads them; the model's ``data_preprocessor`` normalises and
converts colour as its config says), edge-padded to a multiple of
``pad_divisor`` and the flow cropped back.
"""
import os
import os.path as osp
import re
from typing import List, Optional, Sequence, Union

import numpy as np

from ..compat import (MissingCompiledOpError, fix_mmflow_batched_postprocess,
                      import_mmflow_models)
from ..registry import FLOW_ESTIMATORS
from .estimators import BaseFlowEstimator, check_frame_pairs


class UnsupportedDeviceError(RuntimeError):
    """The flow model cannot run on the requested device."""


def _load_mmflow_config(config: Union[str, os.PathLike, dict]):
    """Return ``(model_cfg, full_cfg_or_None, description)``."""
    from mmengine.config import Config, ConfigDict
    if isinstance(config, (str, os.PathLike)):
        name = str(config)
        if '::' in name:  # e.g. 'mmflow::raft/raft_8xb2_100k_mixed-368x768.py'
            from mmengine.hub import get_config
            cfg = get_config(name)
        elif not osp.isfile(name):
            raise FileNotFoundError(f'MMFlow config file not found: {name}')
        else:
            cfg = Config.fromfile(name)
        return ConfigDict(cfg.model), cfg, name
    if isinstance(config, dict):
        cfg = ConfigDict(config)
        if 'model' in cfg:
            return ConfigDict(cfg.model), cfg, 'config dict'
        return cfg, None, 'model config dict'
    raise TypeError('MMFlow config must be a file path, "mmflow::<path>" '
                    f'or a dict, got {type(config).__name__}')


def _pad_divisor_from(cfg) -> Optional[int]:
    """Read ``InputPad``/``InputResize`` ``exponent`` from a test pipeline."""
    try:
        loader = cfg.test_dataloader
        loader = loader[0] if isinstance(loader, (list, tuple)) else loader
        pipeline = loader.dataset.pipeline
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    for step in pipeline:
        if step.get('type') in ('InputPad', 'InputResize') and \
                'exponent' in step:
            return 2**int(step['exponent'])
    return None


@FLOW_ESTIMATORS.register_module()
class MMFlowEstimator(BaseFlowEstimator):
    """Flow from an MMFlow (1.0.0rc0) network, e.g. RAFT.

    Args:
        config (str | dict): MMFlow config file, ``'mmflow::<rel. path>'``
            (a config shipped with the mmflow package) or a config dict (a
            full config with ``model`` or just the model dict).
        checkpoint (str, optional): Weights file (or URL). Required unless
            ``allow_random_weights=True``.
        device (str): ``'cpu'``, ``'cuda'``, ``'cuda:1'``...
        allow_random_weights (bool): Allow ``checkpoint=None`` (tests and
            benchmarks only: the flow is meaningless).
        iters (int, optional): Override the number of refinement iterations
            (RAFT's ``test_cfg.iters``; 12 in the base RAFT config, 32 in
            the fine-tuned ones).
        batch_size (int): Pairs per forward pass in :meth:`estimate_pairs`.
        pad_divisor (int, optional): Pad inputs to a multiple of this
            (default: from the config's test pipeline, else 8 as RAFT needs).
            Inputs smaller than RAFT's correlation pyramid allows (64 px for
            ``num_levels=4``) are edge-padded up to it; the flow is always
            cropped back to ``(H, W)``.
        strict (bool): Require checkpoint keys to match the model exactly.
    """

    def __init__(self,
                 config: Union[str, dict],
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu',
                 allow_random_weights: bool = False,
                 iters: Optional[int] = None,
                 batch_size: int = 1,
                 pad_divisor: Optional[int] = None,
                 strict: bool = True) -> None:
        import torch
        is_url = isinstance(checkpoint, str) and checkpoint.startswith(
            ('http://', 'https://'))
        if checkpoint is None and not allow_random_weights:
            raise ValueError(
                'MMFlowEstimator needs `checkpoint` (a weights file); pass '
                'allow_random_weights=True only for tests/benchmarks')
        if checkpoint is not None and not is_url and \
                not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'MMFlow checkpoint file not found: {checkpoint}')
        self.device = torch.device(device)
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise UnsupportedDeviceError(
                f'device={device!r} requested but torch.cuda.is_available() '
                'is False; use device="cpu"')
        model_cfg, full_cfg, cfg_name = _load_mmflow_config(config)
        self.config_name = cfg_name
        self.checkpoint = checkpoint
        self.batch_size = int(batch_size)
        self.pad_divisor = int(pad_divisor or _pad_divisor_from(full_cfg) or 8)
        # RAFT's correlation pyramid pools the 1/8 feature map num_levels-1
        # times: smaller inputs are edge-padded up to this size.
        self.min_size = max(self.pad_divisor,
                            8 * 2**(int(model_cfg.get('num_levels', 1)) - 1))
        self.model = self._build_model(model_cfg, cfg_name)
        fix_mmflow_batched_postprocess(self.model)  # see amfir_mm.compat
        if iters is not None:
            test_cfg = dict(self.model.test_cfg or {})
            test_cfg['iters'] = int(iters)
            self.model.test_cfg = test_cfg
        if checkpoint is not None:
            self._load_weights(checkpoint, strict)
        if self.device.type == 'cpu':
            from mmengine.model import revert_sync_batchnorm
            self.model = revert_sync_batchnorm(self.model)
            self._check_cpu_support()
        self.model.to(self.device).eval()

    @staticmethod
    def _build_model(model_cfg, cfg_name: str):
        import_mmflow_models()
        from mmengine.registry import DefaultScope
        from mmflow.registry import MODELS as MMFLOW_MODELS
        model_cfg = model_cfg.copy()
        model_cfg['train_cfg'] = None
        model_type = model_cfg.get('type')
        try:
            with DefaultScope.overwrite_default_scope('mmflow'):
                return MMFLOW_MODELS.build(model_cfg)
        except MissingCompiledOpError as err:
            # The registry prefixes "class `X` in module: " once per nesting
            # level; keep the original message, drop the deep traceback.
            reason = re.sub(r'^(class `\w+` in [\w.]+: )+', '', str(err))
            raise MissingCompiledOpError(
                f'cannot build MMFlow model {model_type} ({cfg_name}): '
                f'{reason}') from None

    def _load_weights(self, checkpoint: str, strict: bool) -> None:
        # Local files load through the scheme amfir_mm.compat registers:
        # torch's weights_only loading with MMEngine's checkpoint globals.
        from mmengine.runner import load_checkpoint
        try:
            load_checkpoint(
                self.model, checkpoint, map_location='cpu', strict=strict)
        except (RuntimeError, KeyError, ValueError) as err:
            raise RuntimeError(f'cannot load MMFlow checkpoint {checkpoint} '
                               f'into {self.config_name}: {err}') from None

    def _check_cpu_support(self) -> None:
        for module in self.model.modules():
            if type(module).__module__.startswith('mmcv.ops'):
                raise UnsupportedDeviceError(
                    f'{self.config_name} uses mmcv.ops.'
                    f'{type(module).__name__}, which has no CPU '
                    'implementation; use device="cuda" or a RAFT config')

    def estimate(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        return self._forward([frame1], [frame2])[0]

    def estimate_pairs(self, firsts: Sequence[np.ndarray],
                       seconds: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Batched flow for pairs of ``(H, W, 3)`` uint8 RGB frames.

        Returns:
            list[np.ndarray]: ``(H, W, 2)`` float32 flows in pixels.
        """
        check_frame_pairs(firsts, seconds)
        flows = []
        step = max(1, self.batch_size)
        for start in range(0, len(firsts), step):
            chunk1 = firsts[start:start + step]
            chunk2 = seconds[start:start + step]
            if len({f.shape for f in chunk1}) > 1:
                flows.extend(
                    self._forward([a], [b])[0] for a, b in zip(chunk1, chunk2))
            else:
                flows.extend(self._forward(chunk1, chunk2))
        return [self._as_flow(f, a) for f, a in zip(flows, firsts)]

    def _forward(self, firsts: Sequence[np.ndarray],
                 seconds: Sequence[np.ndarray]) -> List[np.ndarray]:
        """One forward pass over same-shape pairs."""
        import torch
        from mmflow.structures import FlowDataSample
        height, width = firsts[0].shape[:2]
        target_h = max(height, self.min_size)
        target_w = max(width, self.min_size)
        pad_h = target_h - height + (-target_h % self.pad_divisor)
        pad_w = target_w - width + (-target_w % self.pad_divisor)
        # Same layout as MMFlow's InputPad(position='center').
        pad = [[pad_h // 2, pad_h - pad_h // 2],
               [pad_w // 2, pad_w - pad_w // 2]]
        inputs, samples = [], []
        for frame1, frame2 in zip(firsts, seconds):
            pair = np.stack([frame1[..., ::-1], frame2[..., ::-1]])  # BGR
            pair = np.pad(pair, [[0, 0]] + pad + [[0, 0]], mode='edge')
            inputs.append(torch.from_numpy(pair).permute(0, 3, 1, 2))
            samples.append(
                FlowDataSample(
                    metainfo=dict(
                        img_shape=pair.shape[1:3],
                        ori_shape=(height, width),
                        pad=pad)))
        with torch.no_grad():
            data = self.model.data_preprocessor(
                dict(inputs=inputs, data_samples=samples), False)
            results = self.model.predict(data['inputs'], data['data_samples'])
        return [
            r.pred_flow_fw.data.permute(1, 2, 0).float().cpu().numpy()
            for r in results
        ]

    def _repr_params(self) -> list:
        # What determines the flow (the repr is the extraction fingerprint):
        # device and batch size do not.
        iters = (self.model.test_cfg or {}).get('iters')
        return [('config', self.config_name), ('checkpoint', self.checkpoint),
                ('iters', iters)]
