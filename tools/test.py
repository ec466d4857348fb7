"""Meta-test a checkpoint on the config's fixed-seed test episodes.

    python tools/test.py CONFIG CHECKPOINT|none [--work-dir DIR]
        [--episodes FILE] [--dump FILE]

Ends with one line such as ``novel-class 5-way 1-shot accuracy: 61.2 ±
0.9 % (RGB 55.0, flow 48.1, ...)``. Writes to the work dir:
``test_metrics.json`` (the metrics), and, from
``FewShotAccuracy``: ``episode_accuracy.json`` (each test episode's
accuracy), ``per_class_accuracy.png`` and ``reliability_hist.png``; the
log (with the config) is ``work_dir/<timestamp>/<timestamp>.log``. Bad
data stops with one line naming the file (traceback in the log). How each
option changes the config: :func:`amfir_mm.utils.tool.apply_test_options`.
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.dist import is_main_process

from amfir_mm.utils import close_distributed
from amfir_mm.utils.config import load_config
from amfir_mm.utils.tool import (accuracy_summary, apply_test_options,
                                 build_tool_runner, print_header, run_header,
                                 run_tool)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test an amfir-mm model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file, or "none" to test the initialised model '
        '(e.g. a frozen ImageNet backbone: the no-training floor)')
    parser.add_argument('--work-dir', help='where logs and results go')
    parser.add_argument('--dump', help='pickle the per-episode predictions')
    parser.add_argument(
        '--episodes',
        help='episode list (JSON; which videos form each episode): test on '
        'it if the file exists, else write the drawn episodes there, so '
        'that other methods can be tested on identical episodes. Not to be '
        'confused with episode_accuracy.json, the per-episode results')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'test_dataloader.dataset.num_episodes=1000')
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
    cfg, save_episodes_to = apply_test_options(
        load_config(args.config),
        args.config,
        args.checkpoint,
        work_dir=args.work_dir,
        episodes=args.episodes,
        dump=args.dump,
        cfg_options=args.cfg_options,
        launcher=args.launcher)
    print_header('test', run_header(cfg, args.config, 'test', args.checkpoint))
    runner = build_tool_runner(cfg)  # cfg.runner_type, e.g. ChannelsLast
    if save_episodes_to is not None and is_main_process():
        episodes = runner.test_dataloader.dataset
        episodes.save_episodes(save_episodes_to)
        runner.logger.info(
            f'wrote {len(episodes)} episodes to {save_episodes_to}')
    try:
        metrics = runner.test()
        if is_main_process():
            with open(osp.join(cfg.work_dir, 'test_metrics.json'), 'w') as f:
                json.dump(
                    dict(
                        config=args.config,
                        checkpoint=args.checkpoint,
                        metrics=metrics),
                    f,
                    indent=1)
            test_set = cfg.test_dataloader.dataset
            if 'fewshot/accuracy' in metrics and 'num_ways' in test_set:
                print(
                    accuracy_summary(metrics, test_set.num_ways,
                                     test_set.num_shots),
                    flush=True)
        return metrics
    finally:
        close_distributed(runner)


if __name__ == '__main__':
    sys.exit(run_tool(main, 'test'))
