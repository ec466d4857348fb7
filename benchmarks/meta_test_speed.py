"""Meta-test cost: cached embeddings vs per-episode recomputation.

    python benchmarks/meta_test_speed.py [--episodes 10000] [--slow 10]
        [--episode-batch-size 64] [--depth 50] [--size 224] [--head otam]
        [--out benchmarks/results/meta_test_speed.json]

On ../shared/data/ssv2_mini/val (50 videos, 8 frames), one run, one
machine: an AMFIR model (two ResNet-``--depth`` branches, ``--size`` px
centre crops of frames resized to a ``--size * 8 / 7`` short side,
``--head`` OTAM or TRX heads, ASI, AMI; random weights: speed only) with
DIS flow computed on the fly.  The defaults are the standard protocol's
model and crop (ResNet-50, 224 px); ``--depth 18 --size 112`` is a cheap
model whose embedding pass is 9x shorter, so the fixed per-episode cost
weighs more.

1. ``embed``: the cached loop's embedding pass (one backbone pass per video
   per modality, data loading and flow included);
2. ``episodes``: the heads' per-video caches (``cache_videos``: OTAM's
   pair table, TRX's tuple keys / values; none with ``--no-head-cache``),
   then all ``--episodes`` 5-way 1-shot episodes from them (heads, ASI,
   AMI, metric), ``--episode-batch-size`` episodes per model call
   (default: the loop's);
3. ``slow``: MMEngine's plain ``TestLoop`` (both backbones re-run for every
   video of every episode, as TRX / CLIP-FSAR do) on the first ``--slow``
   episodes, and its per-episode time times ``--episodes`` (extrapolated,
   said so in the output).
"""
import argparse
import json
import os
import os.path as osp
import platform
import tempfile
import time

import torch
from mmengine.config import Config
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VAL = osp.join(osp.dirname(ROOT), 'shared', 'data', 'ssv2_mini', 'val')


def eval_pipeline(size: int) -> list:
    return [
        dict(type='SampleFrames', clip_len=1, num_clips=8, test_mode=True),
        dict(type='FlowPairIndices'),
        dict(type='RawFrameDecode'),
        dict(type='ComputeFlow', estimator=dict(type='DISFlowEstimator')),
        dict(type='StackRGBFlow'),
        dict(type='Resize', scale=(-1, round(size * 8 / 7))),
        dict(type='CenterCrop', crop_size=size),
        dict(type='SplitRGBFlow'),
        dict(type='PairedFormatShape', input_format='NCHW'),
        dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))
    ]


def speed_runner(loop,
                 episodes,
                 work_dir,
                 depth=50,
                 size=224,
                 head='otam',
                 head_cache=True,
                 **loop_args):
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/_base_/models/amfir_paired.py'))
    backbone = dict(
        type='ResNet', depth=depth, pretrained=None, norm_eval=False)
    for m in ('rgb', 'flow'):
        cfg.model[m].backbone = backbone
        if head == 'trx':  # TRX's own widths: 1152 channels, pairs + triples
            cfg.model[m].cls_head = dict(
                type='TRXHead', in_channels=512 if depth < 50 else 2048)
        if not head_cache:  # each episode from its gathered features
            cfg.model[m].cls_head.cache_max_mb = 0
    return Runner(
        model=cfg.model,
        work_dir=work_dir,
        test_dataloader=dict(
            batch_size=1,
            num_workers=2,
            persistent_workers=False,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(
                type='EpisodicDataset',
                num_ways=5,
                num_shots=1,
                num_queries=1,
                num_episodes=episodes,
                seed=0,
                dataset=dict(
                    type='FewShotRawframeDataset',
                    ann_file='',
                    data_prefix=dict(img=VAL),
                    filename_tmpl='{:08d}.jpg',
                    pipeline=eval_pipeline(size),
                    test_mode=True))),
        test_evaluator=dict(type='FewShotAccuracy'),
        test_cfg=dict(type=loop, **loop_args),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1000)),
        default_scope='mmaction',
        experiment_name=f'{loop}_{episodes}')


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--episodes', type=int, default=10000)
    parser.add_argument('--slow', type=int, default=10)
    parser.add_argument('--episode-batch-size', type=int)
    parser.add_argument(
        '--depth', type=int, default=50, help='ResNet depth of both branches')
    parser.add_argument('--size', type=int, default=224, help='crop, px')
    parser.add_argument('--head', choices=('otam', 'trx'), default='otam')
    parser.add_argument(
        '--no-head-cache',
        action='store_true',
        help="heads keep no per-video cache (OTAM's pair "
        "table, TRX's tuple keys / values): the ablation")
    parser.add_argument(
        '--out',
        default=osp.join(ROOT, 'benchmarks/results/meta_test_speed.json'))
    args = parser.parse_args()
    import amfir_mm  # noqa: F401
    work = tempfile.mkdtemp()

    loop_args = {} if args.episode_batch_size is None else dict(
        episode_batch_size=args.episode_batch_size)
    model_args = dict(
        depth=args.depth,
        size=args.size,
        head=args.head,
        head_cache=not args.no_head_cache)
    runner = speed_runner('CachedEpisodeTestLoop', args.episodes, work,
                          **model_args, **loop_args)
    torch.manual_seed(0)
    runner.model.init_weights()
    state = runner.model.state_dict()
    loop = runner.test_loop
    runner.model.eval()
    runner.call_hook('before_test_epoch')
    t0 = time.perf_counter()
    feats = loop.embed_all_videos()
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = loop.run_episodes(feats)
    episodes_s = time.perf_counter() - t0

    slow = speed_runner('TestLoop', args.slow, work, **model_args)
    slow.model.load_state_dict(state)
    t0 = time.perf_counter()
    slow.test()
    slow_s = time.perf_counter() - t0
    slow_per_episode = slow_s / args.slow

    fast_total = embed_s + episodes_s
    out = dict(
        command='python benchmarks/meta_test_speed.py '
        f'--episodes {args.episodes} --slow {args.slow} '
        f'--depth {args.depth} --size {args.size} --head {args.head}' +
        (' --no-head-cache' if args.no_head_cache else '') +
        (f' --episode-batch-size {args.episode_batch_size}'
         if args.episode_batch_size else ''),
        date=time.strftime('%Y-%m-%d %H:%M'),
        machine=f'{platform.machine()}, {os.cpu_count()} CPUs, CPU only',
        load_average=os.getloadavg(),
        setting='ssv2_mini val (50 videos x 8 frames), 5-way 1-shot, '
        f'AMFIR 2x ResNet-{args.depth} {args.size} px, '
        f'{args.head.upper()} heads, DIS flow on the fly',
        videos=50,
        episodes=args.episodes,
        episode_batch_size=loop.episode_batch_size,
        embed_s=round(embed_s, 2),
        cached_episodes_s=round(episodes_s, 2),
        cached_ms_per_episode=round(1000 * episodes_s / args.episodes, 3),
        cached_total_s=round(fast_total, 2),
        cached_total_over_embed=round(fast_total / embed_s, 3),
        slow_episodes_measured=args.slow,
        slow_s_per_episode=round(slow_per_episode, 3),
        slow_total_s_extrapolated=round(slow_per_episode * args.episodes),
        speedup_over_slow=round(slow_per_episode * args.episodes / fast_total,
                                1),
        accuracy_random_weights=round(metrics['fewshot/accuracy'], 2))
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
