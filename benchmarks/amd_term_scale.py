"""How strongly each AMD term pulls on the adapters: the posterior term and
the relation term of ``AMDLoss`` on real video features.

    python benchmarks/amd_term_scale.py \\
        --embeddings work_dirs/ssv2_mini_cv/embeddings_<flow>_<config>.pth \\
        --shots 1 --out benchmarks/results/amd_term_scale.json

Reads the frozen-backbone embeddings that ``benchmarks/ssv2_mini.py``
caches, builds the config's model with ``AMDLoss(relation_weight=1)``
(the arm ``dict(relation_weight=1.0)``) as constructed, before any
training (the adapters are the identity), and over ``--episodes`` random
5-way K-shot episodes of the cached training views (labels are not read:
both terms are label-free with ``pi = 1/2``) reports the mean value of
each term and the L2 norm of its gradient on the adapters' weights.  The
ratio says how much the relation term can move the representation next
to the posterior term at the same weight.
"""
import argparse
import json
import os.path as osp
import platform
import sys
import time

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        '--embeddings',
        required=True,
        help="benchmarks/ssv2_mini.py's cached embeddings (.pth)")
    parser.add_argument('--shots', type=int, default=1)
    parser.add_argument('--queries', type=int, default=2)
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help="seed of the episodes and of the adapters' initial weights")
    parser.add_argument('--out', required=True)
    return parser.parse_args(argv)


def adapter_gradient_norm(model, term: torch.Tensor) -> float:
    """L2 norm of ``d term / d adapter weights`` over every branch."""
    model.zero_grad()
    term.backward(retain_graph=True)
    squares = [
        p.grad.pow(2).sum() for name, p in model.named_parameters()
        if '.adapter.' in name and p.grad is not None
    ]
    return float(torch.stack(squares).sum().sqrt())


def main(argv=None):
    args = parse_args(argv)
    import ssv2_mini as bench
    from mmengine.registry import DefaultScope
    torch.set_num_threads(1)
    start = time.monotonic()
    cfg = bench.load_config(
        argparse.Namespace(config=bench.CONFIG, cfg_options=None))
    torch.manual_seed(args.seed)  # the adapters' random projections
    with DefaultScope.overwrite_default_scope('mmaction'):
        model = bench.build_model(cfg, dict(relation_weight=1.0))
    loss = model.loss_amd
    train = torch.load(
        args.embeddings, map_location='cpu', weights_only=True)['train']
    num_videos = train['rgb'].shape[1]
    ways, per_class = bench.NUM_WAYS, args.shots + args.queries
    meta = dict(num_ways=ways, num_shots=args.shots, num_queries=args.queries)
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.episodes):
        videos = torch.as_tensor(
            rng.choice(num_videos, ways * per_class, replace=False))
        view = int(rng.integers(train['rgb'].shape[0]))
        feats = {
            m: train[m][view, videos].flatten(0, 1)[None]
            for m in model.modalities
        }
        out = model.batch_outputs(feats, meta)
        half = torch.full(out['logits'].shape[1:3], 0.5)
        posterior = loss.distil(out['logits'][0], half, loss.temperature)
        relation = loss.relation_weight * loss.distil(
            out['relations'][0], half, loss.relation_temperature)
        rows.append([
            posterior.item(),
            relation.item(),
            adapter_gradient_norm(model, posterior),
            adapter_gradient_norm(model, relation)
        ])
    mean = np.mean(rows, 0)
    result = dict(
        command='python benchmarks/amd_term_scale.py ' +
        ' '.join(argv if argv is not None else sys.argv[1:]),
        date=time.strftime('%Y-%m-%d'),
        machine=f'{platform.machine()}, {torch.get_num_threads()} thread, '
        f'torch {torch.__version__}',
        shots=args.shots,
        episodes=args.episodes,
        temperature=loss.temperature,
        relation_temperature=loss.relation_temperature,
        relation_weight=loss.relation_weight,
        posterior_term=round(mean[0], 5),
        relation_term=round(mean[1], 6),
        posterior_adapter_grad_norm=round(mean[2], 6),
        relation_adapter_grad_norm=round(mean[3], 7),
        grad_norm_ratio=round(mean[2] / mean[3], 1),
        wall_s=round(time.monotonic() - start, 1))
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
