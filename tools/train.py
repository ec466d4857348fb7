"""Train a few-shot recogniser with MMEngine's Runner (MMAction2 style).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--channels-last] [--sync-bn]
    bash tools/dist_train.sh CONFIG GPUS   # several processes

``--amp``, ``--sync-bn`` and ``--channels-last`` set the config entries
MMEngine reads (``optim_wrapper.type='AmpOptimWrapper'``, ``sync_bn``,
``runner_type='ChannelsLastRunner'``), so a config may also set them.
AMP and SyncBN need a GPU: without one, training stops at once with a
one-line message instead of failing after the model is built.

The terminal shows a short header, then MMEngine's loss / ETA lines; the
environment, the whole config and the hook table go to the log file
(``work_dir/<timestamp>/<timestamp>.log``). Bad data (a missing file, a
malformed split line, too few videos, an unreadable frame) stops with one
line naming the file (traceback in the log), and a run that stops before
its first iteration leaves no ``<timestamp>/`` folder behind.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.device import (get_device, is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)

from amfir_mm.utils import close_distributed
from amfir_mm.utils.tool import (build_tool_runner, print_header, run_header,
                                 run_tool)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train an amfir-mm model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no path is given')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (AmpOptimWrapper; needs a GPU)')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='channels-last memory format for the backbones '
        "(runner_type='ChannelsLastRunner')")
    parser.add_argument(
        '--sync-bn',
        action='store_true',
        help="synchronise BatchNorm across processes (sync_bn='torch'; GPU "
        'only; a no-op for one process)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument('--seed', type=int, default=None, help='random seed')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_iters=100')
    parser.add_argument(
        '--launcher',
        default='none',
        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


class UnsupportedOptionError(RuntimeError):
    """A training option this machine cannot run."""


def check_device_options(cfg: Config) -> None:
    """Refuse, before anything is built, options this machine cannot run.

    Raises:
        UnsupportedOptionError: AMP (MMEngine's ``AmpOptimWrapper`` asserts
            a CUDA / NPU / MLU / MUSA device) or SyncBN in a multi-process
            run (torch's DDP and ``SyncBatchNorm`` reject CPU modules)
            without such a device.
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


def merge_args(cfg: Config, args) -> Config:
    """Apply the command-line options to the config.

    Raises:
        UnsupportedOptionError: see :func:`check_device_options`.
    """
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.sync_bn:
        cfg.sync_bn = 'torch'  # read by MMEngine's Runner.wrap_model
    if args.channels_last:
        runner_type = cfg.get('runner_type', 'Runner')
        if runner_type not in ('Runner', 'ChannelsLastRunner'):
            raise UnsupportedOptionError(
                f'--channels-last needs ChannelsLastRunner, but the config '
                f'sets runner_type={runner_type!r}')
        cfg.runner_type = 'ChannelsLastRunner'
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.seed is not None:
        cfg.randomness = dict(cfg.get('randomness', {}), seed=args.seed)
    check_device_options(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    print_header('train', run_header(cfg, args.config, 'train'))
    runner = build_tool_runner(cfg)
    try:
        runner.train()
    finally:
        close_distributed(runner)
    return runner


if __name__ == '__main__':
    sys.exit(run_tool(main, 'train', usage_errors=(UnsupportedOptionError, )))
