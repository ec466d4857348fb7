"""RGB vs flow vs late fusion vs AMFIR on real frames, few-shot.

    python benchmarks/ssv2_mini.py --train-root DIR --eval-root DIR \\
        --shots K --episodes N --work-dir DIR --out RESULT.json [--quick]

Each root is a folder of class folders of video folders of RGB frames
(``<root>/<class>/<video_id>/00000001.jpg ...``), e.g.
``../shared/data/ssv2_mini/train`` and ``.../val``.  The script

1. extracts optical flow for both roots with the project's own extractor
   (:func:`amfir_mm.flow.extraction.run_extraction`, cached in
   ``WORK_DIR/flow_<method>/``; a rerun skips finished videos);
2. meta-trains three models on the train root only, with the same budget
   (config ``configs/ssv2mini/amfir_effl0_112_5way1shot.py``: ImageNet
   EfficientNet-Lite0 per modality, last stages trained, prototype heads):
   an RGB-only model, a flow-only model and the full AMFIR model
   (ASI + AMD + AMI);
3. embeds every eval video once per model (the cached meta-test loop) and
   scores ``N`` fixed-seed 5-way K-shot episodes of the eval root, the same
   episodes for every variant:

   ``rgb`` / ``flow`` (the single-modality models), ``late_fusion`` (mean of
   their posteriors), ``amfir`` (AMFIR's fused posterior), ``amfir_rgb`` /
   ``amfir_flow`` (AMFIR's own branches), ``amfir_average`` (AMFIR's
   branches averaged, i.e. AMI switched off) and ``oracle`` (a query counts
   if either AMFIR branch is right);
4. writes ``RESULT.json``: per variant ``{"acc", "ci95"}`` (mean episode
   accuracy and the 1.96·std/√n half-width, in %), the paired differences
   ``amfir - best single`` and ``amfir - late_fusion`` with a 95% interval
   from a bootstrap over *videos*, ASI's choices, the episode count, seed,
   flow cost and the wall time of each phase.

``--quick`` (CI): DIS flow, 20 training episodes per model, 200 episodes.
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys
import time

import numpy as np
import torch
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = osp.join(ROOT, 'configs/ssv2mini/amfir_effl0_112_5way1shot.py')
MODELS = dict(rgb=('rgb', ), flow=('flow', ), amfir=('rgb', 'flow'))
FLOW_METHODS = dict(tvl1=dict(type='TVL1FlowEstimator'),
                    dis=dict(type='DISFlowEstimator', preset='medium'))
SINGLE = ('rgb', 'flow', 'amfir_rgb', 'amfir_flow')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--train-root', required=True)
    parser.add_argument('--eval-root', required=True)
    parser.add_argument('--shots', type=int, default=1)
    parser.add_argument('--episodes', type=int, default=2000)
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--quick', action='store_true',
                        help='CI mode: DIS flow, 20 training episodes, '
                        '200 test episodes (noisy)')
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--flow', choices=sorted(FLOW_METHODS),
                        help='flow method (default tvl1; dis with --quick)')
    parser.add_argument('--iters', type=int,
                        help='training episodes per model (default: the '
                        "config's max_iters for 1 shot, a third of it for "
                        'more shots: a 5-shot episode holds 2.3x the videos '
                        'and trained 2.7x slower here, and a third keeps the '
                        '5-shot run inside the 25-minute budget; 0 = no '
                        'training)')
    parser.add_argument('--seed', type=int, default=3,
                        help='seed of the evaluation episodes')
    parser.add_argument('--bootstrap', type=int, default=2000,
                        help='bootstrap replicates over videos')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='config overrides key=value (as tools/train.py)')
    args = parser.parse_args(argv)
    if args.flow is None:
        args.flow = 'dis' if args.quick else 'tvl1'
    if args.quick:
        args.iters = 20 if args.iters is None else args.iters
        args.episodes = min(args.episodes, 200)
    return args


# -- 1. flow ---------------------------------------------------------------
def extract_flow(src: str, out: str, method: str, workers: int) -> dict:
    """Flow + RGB rawframes of every video of ``src`` (resumable)."""
    from amfir_mm.flow.extraction import ExtractionOptions, run_extraction
    summary = run_extraction(
        src, out, estimator=FLOW_METHODS[method],
        options=ExtractionOptions(write_rgb=True, short_side=128),
        workers=workers)
    print(summary.report(), flush=True)
    if summary.failures:
        raise RuntimeError(f'flow extraction failed for '
                           f'{len(summary.failures)} videos of {src} (see '
                           'above); fix or remove them and rerun')
    computed = [r for r in summary.results if r.status == 'done']
    return dict(seconds=round(summary.seconds, 1), videos=len(computed),
                fields=sum(max(r.total_frames - 1, 0) for r in computed))


# -- 2. models -------------------------------------------------------------
def build_config(args, name: str, train_frames: str, eval_frames: str):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = osp.join(args.work_dir, f'{args.shots}shot', name)
    cfg.experiment_name = name
    cfg.model.modalities = list(MODELS[name])
    iters = args.iters
    if iters is None:
        iters = cfg.train_cfg.max_iters // (1 if args.shots == 1 else 3)
    cfg.train_cfg.max_iters = max(iters, 1)
    cfg.train_cfg.val_interval = iters + 1
    for sched in cfg.get('param_scheduler', None) or []:
        if 'T_max' in sched:
            sched['T_max'] = max(iters, 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1,
                                        save_last=True, by_epoch=False)
    cfg.default_hooks.logger.interval = max(1, min(25, iters // 4))
    for loader, frames in ((cfg.train_dataloader, train_frames),
                           (cfg.test_dataloader, eval_frames)):
        loader.dataset.num_shots = args.shots
        loader.dataset.dataset.data_prefix = dict(img=frames)
        loader.dataset.dataset.ann_file = ''
        loader.num_workers = args.workers
        loader.persistent_workers = False
    cfg.test_dataloader.dataset.num_episodes = args.episodes
    cfg.test_dataloader.dataset.seed = args.seed
    cfg.test_evaluator = dict(type='FewShotAccuracy')
    return cfg, iters


def train_and_embed(cfg, iters: int):
    """Train (``iters`` > 0) and return the cached eval features and loop.
    """
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    start = time.monotonic()
    if iters > 0:
        runner.train()
    else:
        runner.model.init_weights()
    train_s = time.monotonic() - start
    loop = runner.test_loop
    runner.model.eval()
    start = time.monotonic()
    features = loop.embed_all_videos()
    return runner, loop, features, train_s, time.monotonic() - start


# -- 3. episodes -----------------------------------------------------------
@torch.no_grad()
def predict_all(model, dataset, features, chunk: int = 250) -> dict:
    """Posteriors of every episode: ``{key: (E, M, N)}``, the labels
    ``(E, M)`` and the video indices of queries ``(E, M)`` and supports
    ``(E, N * K)``."""
    scores, labels, queries, supports = {}, [], [], []
    n_support = dataset.num_ways * dataset.num_shots
    cache = model.cache_videos(features)
    for first in range(0, len(dataset), chunk):
        orders, samples = zip(*(dataset.episode_sample(idx) for idx in range(
            first, min(first + chunk, len(dataset)))))
        for out in model.predict_episodes(
                cache, list(samples), video_index=torch.as_tensor(orders)):
            for key in ('pred_score', 'rgb_score', 'flow_score',
                        'reliability'):
                if key in out:
                    scores.setdefault(key, []).append(out.get(key).float())
            labels.append(out.gt_label)
        supports += [order[:n_support] for order in orders]
        queries += [order[n_support:] for order in orders]
    out = {k: torch.stack(v).numpy() for k, v in scores.items()}
    out.update(labels=torch.stack(labels).numpy(),
               queries=np.asarray(queries), supports=np.asarray(supports))
    return out


def variant_scores(preds: dict) -> dict:
    """``(E, M, N)`` posteriors of every variant (see the module doc)."""
    amfir = preds['amfir']
    scores = dict(rgb=preds['rgb']['pred_score'],
                  flow=preds['flow']['pred_score'],
                  amfir=amfir['pred_score'], amfir_rgb=amfir['rgb_score'],
                  amfir_flow=amfir['flow_score'])
    scores['late_fusion'] = 0.5 * (scores['rgb'] + scores['flow'])
    scores['amfir_average'] = 0.5 * (scores['amfir_rgb'] +
                                     scores['amfir_flow'])
    return scores


def bootstrap_difference(correct_a, correct_b, queries, supports,
                         num_videos: int, replicates: int,
                         seed: int = 0) -> dict:
    """Paired accuracy difference ``a - b`` with a bootstrap over videos.

    Each replicate redraws the eval videos with replacement (counts ``c_v``)
    and weights each query by ``c_query * mean(c_support)`` of its episode:
    the first-order effect of redrawing episodes from the resampled video
    set (a query or support video drawn twice counts twice, one not drawn
    drops out).  The episode-level CI ignores this video-level variance,
    which dominates with few eval videos.

    Args:
        correct_a, correct_b: ``(E, M)`` 0/1 correctness of the two variants.
        queries: ``(E, M)`` query video indices; supports ``(E, S)``.

    Returns:
        dict: ``diff`` (points), ``ci95`` = ``[low, high]`` (percentile
        interval, points), ``p_le_0`` (share of replicates with diff <= 0).
    """
    rng = np.random.default_rng(seed)
    diff = (correct_a.astype(np.float64) - correct_b).ravel()
    counts = rng.multinomial(num_videos, np.full(num_videos, 1 / num_videos),
                             size=replicates).astype(np.float64)  # (B, V)
    support_weight = counts[:, supports].mean(-1)  # (B, E)
    weight = (counts[:, queries] * support_weight[:, :, None]).reshape(
        replicates, -1)  # (B, E * M)
    stats = (weight @ diff) / np.maximum(weight.sum(1), 1e-12)
    low, high = np.percentile(stats, [2.5, 97.5])
    return dict(diff=round(100 * float(diff.mean()), 2),
                ci95=[round(100 * float(low), 2), round(100 * float(high), 2)],
                p_le_0=round(float(np.mean(stats <= 0)), 4))


def summarise(scores: dict, preds: dict, num_videos: int,
              replicates: int) -> dict:
    from amfir_mm.evaluation.fewshot_metric import mean_ci95
    labels = preds['amfir']['labels']
    correct = {k: (v.argmax(-1) == labels) for k, v in scores.items()}
    correct['oracle'] = correct['amfir_rgb'] | correct['amfir_flow']
    variants = {}
    for name, ok in correct.items():
        mean, ci = mean_ci95(ok.mean(1))
        variants[name] = dict(acc=round(100 * mean, 2),
                              ci95=round(100 * ci, 2))
    best_single = max(SINGLE, key=lambda k: variants[k]['acc'])
    queries, supports = preds['amfir']['queries'], preds['amfir']['supports']
    paired = {
        f'amfir-{other}': bootstrap_difference(
            correct['amfir'], correct[other], queries, supports, num_videos,
            replicates)
        for other in dict.fromkeys((best_single, 'late_fusion', 'rgb',
                                    'flow', 'amfir_average'))
    }
    pi = preds['amfir']['reliability']  # (E, M, 2): rgb, flow
    picks_flow = pi.argmax(-1) == 1
    one_right = correct['amfir_rgb'] != correct['amfir_flow']
    asi = dict(choice_flow=round(100 * float(picks_flow.mean()), 2),
               mean_pi_flow=round(float(pi[..., 1].mean()), 4))
    if one_right.any():
        asi['oracle_agreement'] = round(100 * float(
            (picks_flow == correct['amfir_flow'])[one_right].mean()), 2)
    return dict(variants=variants, best_single=best_single, paired=paired,
                asi=asi, oracle=variants['oracle'])


def main(argv=None):
    args = parse_args(argv)
    import amfir_mm  # noqa: F401  (registers everything)
    from mmengine.registry import DefaultScope
    DefaultScope.get_instance('ssv2_mini_benchmark', scope_name='mmaction')
    wall = time.monotonic()
    timings = {}
    frames = {}
    flow_cost = {}
    for split, root in (('train', args.train_root),
                        ('eval', args.eval_root)):
        if not osp.isdir(root):
            raise FileNotFoundError(f'{split} root not found: {root}')
        out = osp.join(args.work_dir, f'flow_{args.flow}', split)
        flow_cost[split] = extract_flow(root, out, args.flow, args.workers)
        frames[split] = out
    timings['flow_s'] = round(time.monotonic() - wall, 1)

    preds, train_info, episodes_file = {}, {}, None
    for name in MODELS:
        cfg, iters = build_config(args, name, frames['train'],
                                  frames['eval'])
        runner, loop, feats, train_s, embed_s = train_and_embed(cfg, iters)
        dataset = loop.dataloader.dataset
        if episodes_file is None:
            episodes_file = osp.join(args.work_dir, f'{args.shots}shot',
                                     'eval_episodes.json')
            dataset.save_episodes(episodes_file)
        start = time.monotonic()
        preds[name] = predict_all(runner.model, dataset, feats)
        timings[name] = dict(train_s=round(train_s, 1),
                             embed_s=round(embed_s, 1),
                             episodes_s=round(time.monotonic() - start, 1))
        train_info[name] = dict(iters=iters)
        num_videos = len(dataset.dataset)
        runner.logger.info(f'{name}: trained {iters} episodes in '
                           f'{train_s:.0f} s; {len(dataset)} episodes '
                           'predicted')
        del runner, loop
    # every model saw the same episodes
    for name in MODELS:
        assert np.array_equal(preds[name]['queries'],
                              preds['amfir']['queries'])
    result = summarise(variant_scores(preds), preds, num_videos,
                       args.bootstrap)
    result.update(
        command='python benchmarks/ssv2_mini.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv),
        date=time.strftime('%Y-%m-%d %H:%M'),
        machine=f'{platform.machine()}, {os.cpu_count()} CPUs, '
        f'torch {torch.__version__}, '
        f'{"CUDA" if torch.cuda.is_available() else "CPU only"}',
        config=osp.relpath(args.config, ROOT), shots=args.shots,
        ways=5, episodes=args.episodes, seed=args.seed,
        eval_videos=num_videos, quick=args.quick, flow_method=args.flow,
        flow_cost=flow_cost, train=train_info, timings=timings,
        episodes_file=episodes_file,
        wall_s=round(time.monotonic() - wall, 1))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ('variants', 'paired', 'asi',
                                             'wall_s')}, indent=1))
    return result


if __name__ == '__main__':
    main()
