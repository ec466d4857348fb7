"""Train a few-shot recogniser with MMEngine's Runner (MMAction2 style).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--channels-last] [--sync-bn]
    bash tools/dist_train.sh CONFIG GPUS   # several processes

``--amp``, ``--sync-bn`` and ``--channels-last`` set the config entries
MMEngine reads (``optim_wrapper.type='AmpOptimWrapper'``, ``sync_bn``,
``runner_type='ChannelsLastRunner'``), so a config may also set them.
AMP and SyncBN need a GPU: without one, training stops at once with a
one-line message instead of failing after the model is built. How each
option changes the config: :func:`amfir_mm.utils.apply_train_options`.

The terminal shows a short header, then MMEngine's loss / ETA lines; the
environment, the whole config and the hook table go to the log file
(``work_dir/<timestamp>/<timestamp>.log``). Bad data (a missing file, a
malformed split line, too few videos, an unreadable frame) stops with one
line naming the file (traceback in the log), and a run that stops before
its first iteration leaves no ``<timestamp>/`` folder behind.
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from amfir_mm.engine import NonFiniteLossError
from amfir_mm.utils import (UnsupportedOptionError, apply_train_options,
                            close_distributed)
from amfir_mm.utils.config import load_config
from amfir_mm.utils.tool import (build_tool_runner, print_header, run_header,
                                 run_tool)

# how run_tool reports them: an unsupported option as ``error: ...``; a
# non-finite loss as one line ``NonFiniteLossError: ...`` (it names the
# iteration and the loss terms), its traceback in the run's log
TOOL_ERRORS = dict(
    usage_errors=(UnsupportedOptionError, ),
    reported_errors=(NonFiniteLossError, ))


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


def main(argv=None):
    args = parse_args(argv)
    cfg = apply_train_options(
        load_config(args.config),
        args.config,
        work_dir=args.work_dir,
        resume=args.resume,
        amp=args.amp,
        channels_last=args.channels_last,
        sync_bn=args.sync_bn,
        no_validate=args.no_validate,
        seed=args.seed,
        cfg_options=args.cfg_options,
        launcher=args.launcher)
    print_header('train', run_header(cfg, args.config, 'train'))
    runner = build_tool_runner(cfg)
    try:
        runner.train()
    finally:
        close_distributed(runner)
    return runner


if __name__ == '__main__':
    sys.exit(run_tool(main, 'train', **TOOL_ERRORS))
