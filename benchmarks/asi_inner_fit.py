"""Does ASI's reliability net underfit, and would fitting it better help?
Measured on training classes only.

    python benchmarks/asi_inner_fit.py \\
        --train-root ../shared/data/ssv2_mini/train \\
        --eval-root ../shared/data/ssv2_mini/val --shots 1 \\
        --work-dir work_dirs/ssv2_mini_cv \\
        --out benchmarks/results/asi_inner_fit_1shot.json

The config's ASI is a linear scorer that starts at zero and trains with the
branches: 300 (1 shot) or 100 (5 shots) AdamW steps at lr 1e-3, so each of
its weights can move by about 0.3 at most, and Adam moves them at similar
rates whatever their use.  This script tests whether that limits ASI.  For
each outer fold of ``benchmarks/ssv2_mini.py``'s class cross-validation
(same ``--folds`` / ``--fold-seed``), on its inner splits of the fold's
training classes (``inner_splits``: 3 classes to meta-train on, 2 held
out, as ``--select`` uses them), the frozen-feature AMFIR (no adapter) is
meta-trained once per ``--lr-mults`` entry with ASI's learning rate
multiplied by it (MMEngine's ``paramwise_cfg=dict(custom_keys={'asi':
dict(lr_mult=m)})``; everything else as configured).  On ``--inner-episodes``
fixed-seed 2-way episodes of the held-out classes it records:

* the AUROC of ``pi_flow`` for "flow is right" on the queries where exactly
  one modality is right, and that of the cross-modal probability (the best
  single label-free signal, ``evidence_signals``);
* the spread (standard deviation) of ``pi_flow`` over the queries;
* the largest absolute weight of the scorer's last layer;
* the fused accuracy (AMI with ``pi``).

The outer folds' evaluation classes are never read.  Reads the flow frames
and the embeddings that ``benchmarks/ssv2_mini.py`` cached in
``--work-dir`` (its run with the same ``--flow`` and ``--views`` makes
them).
"""
import argparse
import copy
import json
import logging
import os
import os.path as osp
import platform
import sys
import time

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

#: the candidate the inner folds of ssv2_mini.py --select choose: the
#: config's AMFIR on the frozen features
FROZEN = dict(adapter=False, asi_fit='joint')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    for name in ('--train-root', '--eval-root', '--work-dir', '--out'):
        parser.add_argument(name, required=True)
    parser.add_argument('--shots', type=int, default=1)
    parser.add_argument('--folds', type=int, default=10)
    parser.add_argument('--fold-seed', type=int, default=0)
    parser.add_argument(
        '--use-folds',
        type=int,
        help='only the first N outer folds (default: all)')
    parser.add_argument(
        '--lr-mults', type=float, nargs='+', default=[1.0, 10.0, 100.0])
    parser.add_argument('--flow', default='tvl1')
    parser.add_argument('--views', type=int, default=4)
    parser.add_argument('--inner-episodes', type=int, default=500)
    parser.add_argument(
        '--iters',
        type=int,
        help="training episodes per model (default: as ssv2_mini.py's)")
    parser.add_argument('--seed', type=int, default=3)
    parser.add_argument('--config')
    parser.add_argument('--workers', type=int, default=2)
    return parser.parse_args(argv)


def with_asi_lr_mult(cfg, mult: float):
    """A copy of ``cfg`` whose optimiser multiplies the ASI net's learning
    rate by ``mult`` (MMEngine's ``paramwise_cfg``)."""
    cfg = copy.deepcopy(cfg)
    if mult != 1:
        cfg.optim_wrapper.paramwise_cfg = dict(
            custom_keys={'asi': dict(lr_mult=mult)})
    return cfg


def score_split(bench, model, pool: dict, test: dict, videos: np.ndarray,
                episodes) -> dict:
    """The statistics of the module docstring for one trained model on the
    episodes ``episodes`` of ``videos``."""
    pred = bench.predict_all(model, episodes,
                             {m: test[m][videos]
                              for m in model.modalities})
    gt = pred['labels']
    rgb_ok = pred['rgb_score'].argmax(-1) == gt
    flow_ok = pred['flow_score'].argmax(-1) == gt
    signals = bench.evidence_signals(pred, model.asi.episode_evidence)
    aurocs = bench.signal_aurocs(
        {k: signals[k]
         for k in ('pi_flow', 'cross_probability')}, rgb_ok, flow_ok)
    fused = bench.fuse([pred['rgb_score'], pred['flow_score']],
                       pred['reliability'], model.fusion)
    return dict(
        auroc_pi=round(aurocs['pi_flow'], 2),
        auroc_cross_probability=round(aurocs['cross_probability'], 2),
        pi_flow_std=round(float(pred['reliability'][..., 1].std()), 4),
        scorer_weight_max=round(
            float(model.asi.mlp[-1].weight.detach().abs().max()), 4),
        accuracy=round(100 * float((fused.argmax(-1) == gt).mean()), 2))


def main(argv=None):
    args = parse_args(argv)
    import ssv2_mini as bench
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope

    import amfir_mm  # noqa: F401  (registers everything)
    DefaultScope.get_instance('asi_inner_fit', scope_name='mmaction')
    # with paramwise_cfg MMEngine logs a line per parameter of every model
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    wall = time.monotonic()
    cfg = bench.load_config(
        argparse.Namespace(
            config=args.config or bench.CONFIG, cfg_options=None))
    frames = {}
    for split, root in dict(
            train=args.train_root, eval=args.eval_root).items():
        out = osp.join(args.work_dir, f'flow_{args.flow}', split)
        bench.extract_flow(root, out, args.flow, args.workers)
        frames[split] = out
    pool = bench.pool_videos(bench.video_datasets(cfg, frames))
    config_name = osp.splitext(osp.basename(args.config or bench.CONFIG))[0]
    path = osp.join(
        args.work_dir, f'embeddings_{args.flow}_{config_name}_'
        f'{args.views}views.pth')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path}: no cached embeddings; run benchmarks/ssv2_mini.py '
            'with this --work-dir, --flow and --views first')
    feats = bench.cached_embeddings(path, None, pool['keys'], args.views)
    torch.set_num_threads(1)
    run_args = argparse.Namespace(shots=args.shots, asi_fit='joint')
    iters = args.iters if args.iters is not None else bench.default_iters(
        cfg, argparse.Namespace(iters=None, shots=args.shots))
    folds = bench.make_folds(pool['classes'], args.folds, seed=args.fold_seed)
    folds = folds[:args.use_folds] if args.use_folds else folds
    labels, test = pool['labels'], feats['test']
    runs = {f'{m:g}': [] for m in args.lr_mults}
    for f, (train_cls, _) in enumerate(folds):  # evaluation classes unread
        for i, (inner_train,
                inner_val) in enumerate(bench.inner_splits(list(train_cls))):
            train_videos = np.flatnonzero(np.isin(labels, inner_train))
            val_videos = np.flatnonzero(np.isin(labels, inner_val))
            episodes = bench.episodes_of(pool, val_videos, args.shots, 1,
                                         args.inner_episodes,
                                         args.seed + 100 + i,
                                         'inner validation classes',
                                         len(inner_val))
            for mult in args.lr_mults:
                model, _ = bench.train_arm(
                    with_asi_lr_mult(cfg, mult), run_args, FROZEN, feats, pool,
                    train_videos, iters, 5000 + 100 * f + i, len(inner_train))
                stats = score_split(bench, model, pool, test, val_videos,
                                    episodes)
                runs[f'{mult:g}'].append(
                    dict(
                        fold=f,
                        split=i,
                        held_out=[pool['classes'][c] for c in inner_val],
                        **stats))
        print(
            f'fold {f + 1}/{len(folds)}: ' + ', '.join(
                f'x{m}: AUROC pi {np.mean([r["auroc_pi"] for r in v]):.1f}'
                for m, v in runs.items()) +
            f', {time.monotonic() - wall:.0f} s',
            flush=True)
    summary = {
        m: {
            k: round(float(np.mean([r[k] for r in v])), 3)
            for k in v[0] if k not in ('fold', 'split', 'held_out')
        }
        for m, v in runs.items()
    }
    result = dict(
        summary=summary,
        runs=runs,
        command='python benchmarks/asi_inner_fit.py ' +
        ' '.join(sys.argv[1:] if argv is None else argv),
        date=time.strftime('%Y-%m-%d %H:%M'),
        machine=f'{platform.machine()}, {os.cpu_count()} CPUs, '
        f'torch {torch.__version__}',
        shots=args.shots,
        iters=iters,
        folds=len(folds),
        train_classes=[[pool['classes'][c] for c in train_cls]
                       for train_cls, _ in folds],
        inner_episodes=args.inner_episodes,
        wall_s=round(time.monotonic() - wall, 1))
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    for m, s in summary.items():
        print(f'ASI lr x{m}: ' + ', '.join(f'{k} {v}' for k, v in s.items()))
    return result


if __name__ == '__main__':
    main()
