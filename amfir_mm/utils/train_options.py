"""``tools/train.py``'s options applied to the config, and the check that
this machine can run them.

``--amp``, ``--sync-bn`` and ``--channels-last`` set the config entries
MMEngine reads (``optim_wrapper.type='AmpOptimWrapper'``, ``sync_bn``,
``runner_type='ChannelsLastRunner'``), so a config may also set them; AMP
and SyncBN need a GPU, and without one :func:`apply_train_options` stops
with a one-line :class:`UnsupportedOptionError` before anything is built.
"""
from typing import Optional

from mmengine.config import Config
from mmengine.device import (get_device, is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)

from .tool import apply_common_options


class UnsupportedOptionError(RuntimeError):
    """A training option this machine or config cannot run (its message is
    one line: ``tools/train.py`` prints it as ``error: <message>``)."""


def check_device_options(cfg: Config) -> None:
    """Refuse, before anything is built, options this machine cannot run.

    Raises:
        UnsupportedOptionError: AMP (MMEngine's ``AmpOptimWrapper`` asserts
            a CUDA / NPU / MLU / MUSA device) or SyncBN in a multi-process
            run (torch's DDP and ``SyncBatchNorm`` reject CPU modules)
            without such a device. SyncBN in one process is accepted:
            MMEngine's Runner then keeps BatchNorm.
    """
    accelerator = (
        is_cuda_available() or is_npu_available() or is_mlu_available()
        or is_musa_available())
    if accelerator:
        return
    optim_wrapper = cfg.get('optim_wrapper') or {}
    if optim_wrapper.get('type') == 'AmpOptimWrapper':
        raise UnsupportedOptionError(
            'AMP (--amp / AmpOptimWrapper) needs a GPU: MMEngine\'s '
            f'AmpOptimWrapper runs on CUDA, NPU, MLU or MUSA, and this '
            f'machine has {get_device()} only')
    if cfg.get('sync_bn') and cfg.get('launcher', 'none') != 'none':
        raise UnsupportedOptionError(
            'SyncBN (--sync-bn / sync_bn) needs a GPU: torch\'s DDP and '
            f'SyncBatchNorm take GPU modules only, and this machine has '
            f'{get_device()} only')


def apply_train_options(cfg: Config,
                        config: str,
                        work_dir: Optional[str] = None,
                        resume: Optional[str] = None,
                        amp: bool = False,
                        channels_last: bool = False,
                        sync_bn: bool = False,
                        no_validate: bool = False,
                        seed: Optional[int] = None,
                        cfg_options: Optional[dict] = None,
                        launcher: str = 'none') -> Config:
    """Apply ``tools/train.py``'s options to the config, then
    :func:`check_device_options`.

    Args:
        cfg (Config): the loaded config; changed in place.
        config (str): its file.
        work_dir (str, optional), cfg_options (dict, optional),
        launcher (str): see
            :func:`~amfir_mm.utils.tool.apply_common_options`
            (``cfg_options`` are merged first: the options below override
            them).
        resume (str, optional): ``'auto'``: resume from the latest
            checkpoint in the work dir; a path: from that checkpoint
            (``resume=True``, ``load_from``).
        amp (bool): mixed precision: ``optim_wrapper.type=
            'AmpOptimWrapper'`` (``loss_scale='dynamic'`` unless set).
        channels_last (bool): ``runner_type='ChannelsLastRunner'``.
        sync_bn (bool): ``sync_bn='torch'`` (read by MMEngine's
            ``Runner.wrap_model``).
        no_validate (bool): no validation (``val_cfg``,
            ``val_dataloader``, ``val_evaluator`` set to None).
        seed (int, optional): ``randomness.seed`` (the config's other
            ``randomness`` entries are kept).

    Returns:
        Config: ``cfg``.

    Raises:
        UnsupportedOptionError: ``channels_last`` with a config whose
            ``runner_type`` is neither ``'Runner'`` nor
            ``'ChannelsLastRunner'``; see also :func:`check_device_options`.
    """
    apply_common_options(cfg, config, work_dir, cfg_options, launcher)
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if sync_bn:
        cfg.sync_bn = 'torch'
    if channels_last:
        runner_type = cfg.get('runner_type', 'Runner')
        if runner_type not in ('Runner', 'ChannelsLastRunner'):
            raise UnsupportedOptionError(
                f'--channels-last needs ChannelsLastRunner, but the config '
                f'sets runner_type={runner_type!r}')
        cfg.runner_type = 'ChannelsLastRunner'
    if no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    if seed is not None:
        cfg.randomness = dict(cfg.get('randomness', {}), seed=seed)
    check_device_options(cfg)
    return cfg
