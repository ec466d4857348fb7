"""RGB vs flow vs fusion vs AMFIR on real frames, few-shot: controls,
one-piece ablations and class cross-validation.

    python benchmarks/ssv2_mini.py --train-root DIR --eval-root DIR \\
        --shots K --episodes N --work-dir DIR --out RESULT.json \\
        [--folds F] [--ablations] [--quick]

Each root is a folder of class folders of video folders of RGB frames
(``<root>/<class>/<video_id>/00000001.jpg ...``), e.g.
``../shared/data/ssv2_mini/train`` and ``.../val``.  The script

1. extracts optical flow for both roots with the project's own extractor
   (:func:`amfir_mm.flow.extraction.run_extraction`, cached in
   ``WORK_DIR/flow_<method>/``; a rerun skips finished videos);
2. embeds every video once per modality with the config's frozen ImageNet
   backbones (``configs/ssv2mini/amfir_ssv2mini_1shot_effl0.py``): the test
   view (centre crop) and ``--views`` augmented training views drawn by the
   training pipeline (its only randomness here is ``MultiScaleCrop``'s
   scale and corner: the 8-frame videos make ``SampleFrames`` fixed), cached
   in ``WORK_DIR/embeddings_*.pth`` for every fold and shot setting.  The
   backbones train nothing (``frozen_stages`` covers every stage, BN in eval
   mode; the script stops if a backbone parameter would train), so the
   models differ only in what trains on top: the head temperatures and the
   ASI net;
3. per *fold* (``--folds 0``: one fold, train root -> eval root;
   ``--folds F``: the classes of both roots pooled, ``F`` fixed splits into
   ``num_ways`` evaluation classes and the rest for meta-training),
   meta-trains each model for ``--iters`` episodes of the training classes
   on the cached features (the config's optimiser and schedule, one
   augmented view drawn per video and episode) and scores ``N`` fixed-seed
   5-way K-shot episodes of the evaluation classes, the same episodes for
   every variant:

   ``rgb`` / ``flow`` (single-modality models), ``late_fusion`` (mean of
   their posteriors), ``loglinear_uniform`` (their uniform log-linear
   fusion: the fusion rule alone), ``loglinear_global`` (log-linear with one
   weight fitted, by NLL, on episodes of the *training* classes of the
   fold), ``amfir`` (ASI + AMD + AMI), ``amfir_rgb`` / ``amfir_flow`` (its
   branches), controls on the same AMFIR model: ``amfir_no_ami`` (test-time
   ``pi = 1/2``, same log-linear rule), ``amfir_mean_pi`` (every query's
   ``pi`` replaced by the mean ``pi`` of the fold's test queries),
   ``amfir_shuffled_pi`` (``pi`` permuted across the fold's test queries),
   and ``oracle`` (either AMFIR branch right).  ``--ablations`` adds models
   that change one thing each: ``amfir_no_asi`` (``pi = 1/2`` at training
   and test, same rule), ``amfir_joint_scorer`` (ASI's joint MLP scorer
   instead of the shared one) and ``amfir_joint_asi`` (ASI trained with
   the branches only, no held-out stage); ``MODELS`` lists the trained
   arms (frozen, adapter + CE, mutual learning, AMD by pi, AMD by r).
   ``--select`` adds ``amfir_selected``: per fold, one of ``SELECTION``'s
   candidates (no adapter; adapter; adapter + relation distillation) and
   AMI's sharpness, chosen by an inner class cross-validation on the
   fold's training classes alone (:func:`select_settings`);
4. writes ``RESULT.json``: per variant the mean accuracy over folds with a
   95% interval from a bootstrap over folds and videos (and, per fold, the
   accuracy and episode CI), the paired differences ``amfir - variant``
   with the same bootstrap, ASI's selection skill on the queries where
   exactly one modality is right (base rates, balanced accuracy, AUROC of
   ``pi_flow``), the trainable parameters of every model, the fitted global
   weights, the folds, and the wall time of each phase.

``--quick`` (CI): DIS flow, 1 training view, 20 training episodes per
model, 200 episodes.
"""
import argparse
import copy
import json
import math
import os
import os.path as osp
import platform
import random
import sys
import time
from itertools import combinations

import numpy as np
import torch
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
CONFIG = osp.join(ROOT, 'configs/ssv2mini/amfir_ssv2mini_1shot_effl0.py')
# trained models ("arms"): name -> how it differs from the config's model
# (see arm_model_config): ``modalities``, ``adapter`` (False: no
# TemporalAdapter, the frozen features as they are), ``amd`` (AMD's
# weights: 'target' = the labelled free-energy target r, 'reliability' =
# pi, 'uniform' = symmetric mutual learning, None = no AMD loss), and
# plain overrides of cfg.model.  'amfir' is the config itself.
MODELS = dict(
    rgb=dict(modalities=['rgb'], adapter=False),
    flow=dict(modalities=['flow'], adapter=False),
    rgb_adapter=dict(modalities=['rgb']),
    flow_adapter=dict(modalities=['flow']),
    amfir_frozen=dict(adapter=False),
    amfir_ce=dict(amd=None),
    amfir_ml=dict(amd='uniform'),
    amfir_amd_pi=dict(amd='reliability'),
    amfir=dict())
ABLATIONS = dict(
    amfir_no_asi=dict(reliability='uniform'),
    # ASI as before the 'shared' scorer: one MLP over both modalities'
    # evidence (merged into the config's asi)
    amfir_joint_scorer=dict(asi=dict(scorer='joint', hidden_channels=32)),
    amfir_joint_asi=dict(asi_fit='joint'))
# amfir_mixture (fusion='mixture' instead of log-linear) was measured in
# the run with the joint scorer (results/ssv2_mini_cv_*shot_joint_scorer
# .json), amfir_rkd (relation distillation at relation_weight=1) in the
# run after it (results/ssv2_mini_cv_*shot_shared_scorer.json); neither is
# trained here any more (the relation weight is now one of SELECTION's
# choices); their labels stay for those files
# --select: the settings of ``amfir_selected`` are chosen per outer fold by
# an inner class cross-validation on that fold's training classes only
# (select_settings): one of these trained candidates (arms as in MODELS)
# and AMI's test-time sharpness (``fusion_sharpness``: weights pi ** beta).
# The relation weight 50 is where benchmarks/amd_term_scale.py puts the
# relation term's pull on the adapters level with the posterior term's
# (33-126 times weaker at weight 1).  Fixed before any run that reports it.
# frozen_asi_disagreement: ASI's loss on the disagreement queries only
# (ASILoss(queries='disagreement')), added by the argument in ASILoss's
# docstring before any run measured it, to the frozen candidate only (the
# cheap one to train: the selection's time budget).
SELECTION = dict(
    candidates=dict(
        frozen=dict(adapter=False),
        frozen_asi_disagreement=dict(
            adapter=False, loss_asi=dict(queries='disagreement')),
        adapter=dict(),
        adapter_relations=dict(relation_weight=50.0)),
    sharpness=(1.0, 2.0, 4.0))
MULTIMODAL = ('amfir_frozen', 'amfir_ce', 'amfir_ml', 'amfir_amd_pi', 'amfir',
              'amfir_rkd', 'amfir_selected')
FLOW_METHODS = dict(
    tvl1=dict(type='TVL1FlowEstimator'),
    dis=dict(type='DISFlowEstimator', preset='medium'))
SINGLE = ('rgb', 'flow', 'rgb_adapter', 'flow_adapter', 'amfir_rgb',
          'amfir_flow')
NUM_WAYS = 5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--train-root')
    parser.add_argument('--eval-root')
    parser.add_argument('--shots', type=int, default=1)
    parser.add_argument(
        '--episodes',
        type=int,
        default=2000,
        help='evaluation episodes per fold')
    parser.add_argument('--work-dir')
    parser.add_argument('--out')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='CI mode: DIS flow, 1 training view, 20 '
        'training episodes, 200 test episodes (noisy)')
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument(
        '--flow',
        choices=sorted(FLOW_METHODS),
        help='flow method (default tvl1; dis with --quick)')
    parser.add_argument(
        '--iters',
        type=int,
        help='training episodes per model (default: the '
        "config's max_iters for 1 shot, a third of it for "
        'more shots, as the earlier backbone-pass runs; '
        '0 = no training)')
    parser.add_argument(
        '--folds',
        type=int,
        default=0,
        help='0: one fold, train root -> eval root; F > 0: '
        'pool the classes of both roots and rotate over F '
        'fixed splits (5 evaluation classes, the rest for '
        'meta-training)')
    parser.add_argument(
        '--fold-seed', type=int, default=0, help='seed of the fold splits')
    parser.add_argument(
        '--ablations',
        action='store_true',
        help='also train the one-piece ablations '
        f'({", ".join(ABLATIONS)})')
    parser.add_argument(
        '--views',
        type=int,
        help='augmented training views cached per video '
        '(default 4; 1 with --quick)')
    parser.add_argument(
        '--fit-episodes',
        type=int,
        default=500,
        help='training-class episodes on which '
        'loglinear_global fits its weight')
    parser.add_argument(
        '--seed', type=int, default=3, help='seed of the evaluation episodes')
    parser.add_argument(
        '--seeds',
        type=int,
        help='training seeds per model and fold (default 3; 1 with '
        '--quick); the accuracies average them')
    parser.add_argument(
        '--transductive',
        action='store_true',
        help='also score opt-in transductive inference (beyond the paper) '
        'of ' + ', '.join(TRANSDUCTIVE) + ' and a transductive late fusion '
        'on the same episodes (predict_transductive)')
    parser.add_argument(
        '--select',
        action='store_true',
        help='also train amfir_selected, its settings chosen per fold by an '
        'inner class cross-validation on the fold\'s training classes '
        '(SELECTION, select_settings)')
    parser.add_argument(
        '--inner-episodes',
        type=int,
        default=500,
        help='2-way validation episodes per inner split (--select)')
    parser.add_argument(
        '--asi-fit',
        choices=('heldout', 'joint'),
        default='heldout',
        help='heldout: ASI trained again, branches frozen, on episodes of '
        'videos held out from a copy of the branches (see '
        'fit_asi_heldout); joint: ASI trained with the branches only')
    parser.add_argument(
        '--bootstrap',
        type=int,
        default=2000,
        help='bootstrap replicates over folds and videos')
    parser.add_argument(
        '--workers', type=int, default=2, help='flow extraction processes')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads for training and episodes, per process (1: '
        'the models are so small that more threads only wait on each '
        'other; use --fold-workers instead)')
    parser.add_argument(
        '--fold-workers',
        type=int,
        default=1,
        help='folds trained and scored at once, in forked processes (Linux '
        'and macOS); every fold seeds its own generators, so the results '
        'do not depend on it (default 1: one fold after another)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='config overrides key=value (as tools/train.py)')
    parser.add_argument(
        '--report',
        nargs='+',
        metavar='RESULT.json',
        help='print the Markdown tables of these results '
        '(one per shot setting) and exit')
    args = parser.parse_args(argv)
    if args.report:
        return args
    missing = [
        f'--{name.replace("_", "-")}'
        for name in ('train_root', 'eval_root', 'work_dir', 'out')
        if getattr(args, name) is None
    ]
    if missing:
        parser.error(f'the following arguments are required: '
                     f'{", ".join(missing)}')
    if args.flow is None:
        args.flow = 'dis' if args.quick else 'tvl1'
    if args.views is None:
        args.views = 1 if args.quick else 4
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.quick:
        args.iters = 20 if args.iters is None else args.iters
        args.episodes = min(args.episodes, 200)
        args.inner_episodes = min(args.inner_episodes, 100)
    for name in ('views', 'episodes', 'fit_episodes', 'shots', 'seeds',
                 'inner_episodes', 'threads', 'fold_workers'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.folds < 0:
        parser.error(f'--folds must be >= 0, got {args.folds}')
    return args


def class_names(root: str) -> list:
    if not osp.isdir(root):
        raise FileNotFoundError(f'root not found: {root}')
    return sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))


def make_folds(classes: list,
               folds: int,
               ways: int = NUM_WAYS,
               seed: int = 0) -> list:
    """``folds`` fixed ``(train_classes, eval_classes)`` splits of the
    pooled ``classes``: ``ways`` evaluation classes, the rest for
    meta-training.  Splits come in complementary pairs where possible
    (fold ``2i + 1`` evaluates on fold ``2i``'s training classes), so that
    with an even count and ``2 * ways`` classes every class is evaluated
    equally often; all splits when ``folds`` is their number.

    Raises:
        ValueError: fewer than ``2 * ways`` classes (an episode needs
            ``ways`` classes on either side), or more folds than splits.
    """
    n = len(classes)
    if n < 2 * ways:
        raise ValueError(
            f'--folds needs at least {2 * ways} classes ({ways} to '
            f'meta-train on and {ways} to evaluate on in {ways}-way '
            f'episodes); the two roots hold {n}: {classes}')
    possible = math.comb(n, ways)
    if folds > possible:
        raise ValueError(f'--folds {folds}: {n} classes give only '
                         f'{possible} different {ways}-class evaluation '
                         'sets')
    everything = list(combinations(range(n), ways))
    if folds == possible:
        chosen = everything
    else:
        rng = np.random.default_rng(seed)
        chosen, seen = [], set()
        for idx in rng.permutation(len(everything)):
            if len(chosen) >= folds:
                break
            split = everything[idx]
            rest = tuple(c for c in range(n) if c not in split)
            for cand in ((split, rest) if len(rest) == ways else (split, )):
                if cand not in seen and len(chosen) < folds:
                    seen.add(cand)
                    chosen.append(cand)
    return [(sorted(set(range(n)) - set(ev)), sorted(ev)) for ev in chosen]


# -- 1. flow ---------------------------------------------------------------
def extract_flow(src: str, out: str, method: str, workers: int) -> dict:
    """Flow + RGB rawframes of every video of ``src`` (resumable)."""
    from amfir_mm.flow.extraction import ExtractionOptions, run_extraction
    summary = run_extraction(
        src,
        out,
        estimator=FLOW_METHODS[method],
        options=ExtractionOptions(write_rgb=True, short_side=128),
        workers=workers)
    print(summary.report(), flush=True)
    if summary.failures:
        raise RuntimeError(f'flow extraction failed for '
                           f'{len(summary.failures)} videos of {src} (see '
                           'above); fix or remove them and rerun')
    computed = [r for r in summary.results if r.status == 'done']
    return dict(
        seconds=round(summary.seconds, 1),
        videos=len(computed),
        fields=sum(max(r.total_frames - 1, 0) for r in computed))


# -- 2. videos and their cached embeddings --------------------------------
class VideoList:
    """The part of a video dataset :class:`EpisodicDataset` reads (labels
    and ids), for episodes over a subset of the pooled videos."""

    def __init__(self, keys, labels, classes, origin: str) -> None:
        self.ann_file = origin
        self.metainfo = dict(classes=tuple(classes))
        self._infos = [
            dict(video_id=k, label=int(lab)) for k, lab in zip(keys, labels)
        ]

    def full_init(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._infos)

    def get_data_info(self, idx: int) -> dict:
        return dict(self._infos[idx])


def load_config(args):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def video_datasets(cfg, frames: dict) -> dict:
    """Per split (``train``/``eval`` root) the video dataset with the test
    and with the training pipeline."""
    from mmaction.registry import DATASETS
    out = {}
    for split, root in frames.items():
        out[split] = {}
        for mode, loader in (('test', cfg.test_dataloader),
                             ('train', cfg.train_dataloader)):
            ds_cfg = loader.dataset.dataset.copy()
            ds_cfg.update(data_prefix=dict(img=root), ann_file='')
            out[split][mode] = DATASETS.build(ds_cfg)
    return out


def pool_videos(datasets: dict) -> dict:
    """All videos of both roots: ``keys`` (``split/video_id``), pooled
    ``labels`` (index into ``classes``, the sorted class names of both
    roots), ``split`` and ``index`` (position in that root's dataset)."""
    entries = []
    for split, modes in datasets.items():
        ds = modes['test']
        names = ds.metainfo['classes']
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            entries.append((split, i, f'{split}/{info["video_id"]}',
                            names[info['label']]))
    classes = sorted({e[3] for e in entries})
    return dict(
        keys=[e[2] for e in entries],
        split=[e[0] for e in entries],
        index=[e[1] for e in entries],
        classes=classes,
        labels=np.asarray([classes.index(e[3]) for e in entries]))


def arm_model_config(cfg, arm: dict):
    """``cfg.model`` changed as the arm says (see ``MODELS``); an ``asi`` or
    ``loss_asi`` entry is merged into the config's."""
    model_cfg = copy.deepcopy(cfg.model)
    for key, value in arm.items():
        if key == 'adapter':
            if not value:
                for m in ('rgb', 'flow'):
                    model_cfg[m].cls_head.pop('adapter', None)
        elif key == 'amd':
            if value is None:
                model_cfg.loss_amd = None
            else:
                model_cfg.amd_weights = value
        elif key in ('asi', 'loss_asi'):
            model_cfg[key] = dict(model_cfg[key], **value)
        elif key == 'relation_weight':
            model_cfg.loss_amd = dict(
                model_cfg.loss_amd, relation_weight=value)
        elif key != 'asi_fit':
            model_cfg[key] = value
    return model_cfg


def build_model(cfg, arm: dict, pretrained: bool = False):
    """The config's model changed as ``arm`` says.  Only the embedding
    model loads the ImageNet weights (``pretrained``): the trained models
    run on the cached features, and ``init_weights`` leaves their heads and
    ASI net as built."""
    from mmaction.registry import MODELS as REGISTRY
    model = REGISTRY.build(arm_model_config(cfg, arm))
    if pretrained:
        model.init_weights()
    return model


def trainable_parameters(model) -> dict:
    """Trainable parameter counts of ``model`` (in train mode) by part;
    raises if a backbone parameter trains (the cached features would then
    be stale)."""
    model.train()
    parts = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            part = '.'.join(name.split('.')[:3]) if name.startswith(
                'branches.') else name.split('.')[0]
            parts[part] = parts.get(part, 0) + param.numel()
    backbone = {k: v for k, v in parts.items() if '.backbone' in k}
    if backbone:
        raise RuntimeError(
            f'the config trains backbone parameters {backbone}: the cached '
            'features of this benchmark need frozen backbones '
            '(frozen_stages covering every stage, norm_eval=True)')
    return dict(total=sum(parts.values()), parts=parts)


@torch.no_grad()
def embed(model,
          datasets: dict,
          pool: dict,
          views: int,
          seed: int = 0,
          batch: int = 10) -> dict:
    """Per-frame features of every pooled video: ``test`` modality ->
    ``(num_videos, T, C)`` and ``train`` modality -> ``(views, num_videos,
    T, C)``, view ``v`` of video ``i`` drawn by the training pipeline
    under the seed ``(seed, v, i)``."""
    from mmengine.dataset import pseudo_collate
    model.eval()
    out = {}
    for mode, count in (('test', 1), ('train', views)):
        per_view = []
        for v in range(count):
            feats = []
            for first in range(0, len(pool['keys']), batch):
                items = []
                for i in range(first, min(first + batch, len(pool['keys']))):
                    state = hash((seed, v, i)) % 2**32
                    random.seed(state)
                    np.random.seed(state)
                    ds = datasets[pool['split'][i]][mode]
                    items.append(ds.prepare_data(pool['index'][i]))
                feats.append(model.embed_videos(pseudo_collate(items)))
            per_view.append(
                {m: torch.cat([f[m] for f in feats])
                 for m in feats[0]})
        out[mode] = ({
            m: per_view[0][m]
            for m in per_view[0]
        } if mode == 'test' else {
            m: torch.stack([p[m] for p in per_view])
            for m in per_view[0]
        })
    return out


def cached_embeddings(path: str, compute, keys: list, views: int) -> dict:
    if osp.isfile(path):
        saved = torch.load(path, map_location='cpu', weights_only=True)
        if saved['video_keys'] == keys and saved['views'] == views:
            print(
                f'loaded the embeddings of {len(keys)} videos from {path}',
                flush=True)
            return saved
        print(f'{path} holds other videos or views; recomputing', flush=True)
    feats = compute()
    saved = dict(video_keys=keys, views=views, **feats)
    torch.save(saved, path)
    return saved


# -- 3. training and episodes on cached features ---------------------------
def episodes_of(pool: dict,
                videos: np.ndarray,
                shots: int,
                queries: int,
                num: int,
                seed: int,
                origin: str,
                ways: int = NUM_WAYS):
    from amfir_mm.datasets import EpisodicDataset
    return EpisodicDataset(
        VideoList([pool['keys'][v] for v in videos], pool['labels'][videos],
                  pool['classes'], origin),
        num_ways=ways,
        num_shots=shots,
        num_queries=queries,
        num_episodes=num,
        seed=seed,
        check_frame_dirs=False)


def train_cached(cfg,
                 model,
                 views: dict,
                 pool: dict,
                 videos: np.ndarray,
                 shots: int,
                 iters: int,
                 seed: int,
                 asi_only: bool = False,
                 ways: int = NUM_WAYS) -> float:
    """Meta-train ``model`` for ``iters`` ``ways``-way episodes of
    ``videos`` on their cached training views (``(views, num_videos, T,
    C)`` per modality; one view drawn per video and episode) with the
    config's optimiser and schedule; returns the seconds taken.

    ``asi_only``: train the reliability net alone on ``loss_asi`` (the
    second ASI stage), every other parameter frozen."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    start = time.monotonic()
    if iters <= 0:
        return 0.0
    target = model.asi if asi_only else model
    optim = build_optim_wrapper(target, cfg.optim_wrapper)
    scheds = []
    for sched in cfg.get('param_scheduler', None) or []:
        sched = dict(sched, optimizer=optim)
        if 'T_max' in sched:
            sched['T_max'] = iters
        scheds.append(PARAM_SCHEDULERS.build(sched))
    episodes = episodes_of(pool, videos, shots,
                           cfg.train_dataloader.dataset.num_queries, iters,
                           seed, 'training classes', ways)
    rng = np.random.default_rng(seed)
    num_views = next(iter(views.values())).shape[0]
    model.train()
    for param in model.parameters():
        param.requires_grad_(not asi_only)
    if asi_only:
        model.asi.requires_grad_(True)
    for it in range(iters):
        order, sample = episodes.episode_sample(it)
        vids = torch.as_tensor(videos[order])
        pick = torch.as_tensor(rng.integers(num_views, size=len(vids)))
        feats = {
            m: views[m][pick, vids].flatten(0, 1)[None]
            for m in model.modalities
        }
        out = model.episode_outputs(feats, [sample])[0]
        if asi_only:
            loss = model.loss_asi(out['log_pi'], out['log_probs'].detach(),
                                  sample.gt_label)
        else:
            loss, _ = model.parse_losses(
                model.episode_losses(out, sample.gt_label))
        optim.update_params(loss)
        for sched in scheds:
            sched.step()
    model.eval()
    model.requires_grad_(True)
    return time.monotonic() - start


TRANSDUCTIVE = ('rgb', 'flow', 'rgb_adapter', 'flow_adapter', 'amfir_frozen',
                'amfir')


@torch.no_grad()
def predict_transductive(model,
                         pred: dict,
                         features: dict,
                         steps: int = 3) -> dict:
    """Opt-in transductive inference on the episodes of ``pred`` (beyond
    the paper): each modality's prototypes refined by the episode's
    unlabelled queries (:class:`CrossModalSoftKMeans`, ``steps`` soft
    k-means steps on the heads' video embeddings, the adapted frame means
    of a :class:`PrototypeHead`).  A single-modality model assigns queries
    by its own posteriors (``source='self'``); a multimodal one by the
    other modality's more confident ones (``source='other'``) and fuses
    the refined posteriors log-linearly with the module's per-episode
    reliability (cross-modal agreement, no labels).

    Returns:
        dict: ``pred_score`` ``(E, M, N)`` and, for a multimodal model,
        ``rgb_score`` / ``flow_score`` and ``reliability`` ``(E, M, 2)``.
    """
    from amfir_mm.models.fusion import CrossModalSoftKMeans
    supports = torch.as_tensor(pred['supports'])
    queries = torch.as_tensor(pred['queries'])
    ways = pred['pred_score'].shape[-1]
    shots = supports.shape[1] // ways
    support, query, temperature = {}, {}, {}
    for m in model.modalities:
        head = model.branches[m].cls_head
        embeddings = head.cache_videos(features[m])  # (V, C)
        support[m], query[m] = embeddings[supports], embeddings[queries]
        temperature[m] = head.temperature
    multimodal = len(model.modalities) > 1
    refine = CrossModalSoftKMeans(
        steps=steps, source='other' if multimodal else 'self')
    out = refine(support, query, temperature, ways, shots)
    probs = {m: lp.exp().numpy() for m, lp in out['log_probs'].items()}
    if not multimodal:
        return dict(pred_score=probs[model.modalities[0]])
    reliability = out['reliability'][:, None].expand(-1, queries.shape[1],
                                                     -1).numpy()
    return dict(
        pred_score=fuse([probs['rgb'], probs['flow']], reliability,
                        'log_linear'),
        rgb_score=probs['rgb'],
        flow_score=probs['flow'],
        reliability=reliability)


def split_videos(videos: np.ndarray, labels: np.ndarray, seed: int) -> tuple:
    """``videos`` split in two halves with each class halved (the second
    half gets the odd one): the branches' half and ASI's held-out half."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for c in np.unique(labels[videos]):
        own = rng.permutation(videos[labels[videos] == c])
        first += list(own[:len(own) // 2])
        second += list(own[len(own) // 2:])
    return np.sort(first), np.sort(second)


def fit_asi_heldout(cfg, model, initial_state: dict, arm: dict, feats: dict,
                    pool: dict, videos: np.ndarray, shots: int, iters: int,
                    seed: int) -> float:
    """ASI for unseen classes (cross-fitting inside the fold): a copy of
    the arm is meta-trained on one half of each training class's videos,
    its branches are frozen, and its reliability net is trained again, on
    ``loss_asi`` alone, on episodes of the other half: videos its branches
    never saw, whose posteriors look like those of novel classes more than
    training posteriors do.  That net replaces ``model``'s (whose branches
    trained on all the videos); ``initial_state`` is ``model``'s state
    before its training.  Where a half holds fewer than ``shots`` +
    queries videos of a class, both stages use as many shots as fit.
    Returns the seconds taken."""
    start = time.monotonic()
    branches_half, asi_half = split_videos(videos, pool['labels'], seed)
    # a half may hold too few videos per class for K shots + the queries
    # (ssv2_mini: 5 of 10 at K = 5): then both stages use fewer shots
    smallest = min(
        np.bincount(pool['labels'][half])[np.unique(
            pool['labels'][half])].min() for half in (branches_half, asi_half))
    shots = min(shots, smallest - cfg.train_dataloader.dataset.num_queries)
    if shots < 1:
        raise ValueError(f'held-out ASI: {smallest} videos per class in a '
                         'half are too few for an episode')
    helper = build_model(cfg, arm)
    helper.load_state_dict(initial_state)
    train_cached(cfg, helper, feats['train'], pool, branches_half, shots,
                 iters, seed)
    test_view = {m: f[None] for m, f in feats['test'].items()}
    train_cached(
        cfg,
        helper,
        test_view,
        pool,
        asi_half,
        shots,
        iters,
        seed + 1,
        asi_only=True)
    model.asi.load_state_dict(helper.asi.state_dict())
    return time.monotonic() - start


@torch.no_grad()
def predict_all(model, dataset, features, chunk: int = 250) -> dict:
    """Posteriors of every episode: ``{key: (E, M, N)}``, the labels
    ``(E, M)`` and the video indices of queries ``(E, M)`` and supports
    ``(E, N * K)``."""
    scores, labels, queries, supports = {}, [], [], []
    n_support = dataset.num_ways * dataset.num_shots
    model.eval()
    cache = model.cache_videos(features)
    evidence = getattr(model, 'asi', None) is not None and \
        model.asi.episode_evidence
    for first in range(0, len(dataset), chunk):
        orders, samples = zip(
            *(dataset.episode_sample(idx)
              for idx in range(first, min(first + chunk, len(dataset)))))
        if evidence:
            from amfir_mm.models import episode_shape
            scores.setdefault('episode_evidence', []).extend(
                model.batch_outputs(
                    cache, episode_shape(samples),
                    torch.as_tensor(orders))['episode_evidence'].unbind())
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
    out.update(
        labels=torch.stack(labels).numpy(),
        queries=np.asarray(queries),
        supports=np.asarray(supports))
    return out


def fuse(posteriors: list, weights: np.ndarray, mode: str) -> np.ndarray:
    """AMI's rule (:func:`amfir_mm.models.fusion.fuse_posteriors`) on
    ``S`` posteriors ``(E, M, N)`` with weights ``(E, M, S)`` (or ``(S,)``
    for every query); returns the fused posteriors ``(E, M, N)``."""
    from amfir_mm.models.fusion import fuse_posteriors
    log_p = torch.from_numpy(np.stack(posteriors, axis=2)).double()
    log_p = log_p.clamp_min(1e-300).log()  # (E, M, S, N)
    w = torch.as_tensor(
        np.broadcast_to(weights, log_p.shape[:3]).copy(), dtype=torch.float64)
    fused = fuse_posteriors(log_p.flatten(0, 1), w.flatten(0, 1), mode)
    return fused.unflatten(0, log_p.shape[:2]).exp().numpy()


def fit_global_weight(rgb: dict, flow: dict) -> float:
    """The weight of rgb in ``w log p_rgb + (1 - w) log p_flow`` that
    minimises the NLL of the labels, on a 0.01 grid."""
    grid = np.linspace(0, 1, 101)
    labels = rgb['labels']
    nll = []
    for w in grid:
        fused = fuse([rgb['pred_score'], flow['pred_score']],
                     np.array([w, 1 - w]), 'log_linear')
        picked = np.take_along_axis(fused, labels[..., None], -1)
        nll.append(-np.log(np.maximum(picked, 1e-300)).mean())
    return float(grid[int(np.argmin(nll))])


def variant_scores(preds: dict,
                   w_rgb: float,
                   fusion,
                   seed: int = 0,
                   singles: tuple = ('rgb', 'flow')) -> dict:
    """``(E, M, N)`` posteriors of every variant (see the module doc).

    ``preds``: per trained model its :func:`predict_all`; ``fusion``: the
    AMI rule, one for all or per model; ``singles``: the two
    single-modality models that late fusion and the log-linear baselines
    fuse.  Every multimodal model ``X`` gets ``X``, its branches
    ``X_rgb`` / ``X_flow`` and the controls ``X_no_ami``, ``X_mean_pi``
    and ``X_shuffled_pi``."""
    rgb, flow = (preds[k]['pred_score'] for k in singles)
    scores = {k: v['pred_score'] for k, v in preds.items()}
    scores.update(
        late_fusion=fuse([rgb, flow], 0.5, 'mixture'),
        loglinear_uniform=fuse([rgb, flow], 0.5, 'log_linear'),
        loglinear_global=fuse([rgb, flow], np.array([w_rgb, 1 - w_rgb]),
                              'log_linear'))
    rng = np.random.default_rng(seed)
    for name, pred in preds.items():
        if 'reliability' not in pred or 'rgb_score' not in pred or \
                'flow_score' not in pred:
            continue
        rule = fusion if isinstance(fusion, str) else fusion[name]
        branches = [pred['rgb_score'], pred['flow_score']]
        pi = pred['reliability']  # (E, M, 2): rgb, flow
        if not np.allclose(
                fuse(branches, pi, rule), pred['pred_score'], atol=1e-4):
            raise AssertionError(f're-fusing the branches of {name} with '
                                 'its pi does not give its prediction')
        flat = pi.reshape(-1, 2)
        shuffled = flat[rng.permutation(len(flat))].reshape(pi.shape)
        scores.update({
            f'{name}_rgb': branches[0],
            f'{name}_flow': branches[1],
            f'{name}_no_ami': fuse(branches, 0.5, rule),
            f'{name}_mean_pi': fuse(branches, flat.mean(0), rule),
            f'{name}_shuffled_pi': fuse(branches, shuffled, rule)
        })
    return scores


# -- 4. statistics ---------------------------------------------------------
def bootstrap_folds(values: list,
                    queries: list,
                    supports: list,
                    num_videos: int,
                    replicates: int,
                    seed: int = 0,
                    chunk: int = 100) -> tuple:
    """Means over folds of ``K`` per-query statistics, and their bootstrap
    replicates over folds *and* videos.

    Each replicate redraws the videos with replacement (counts ``c_v``,
    shared by all folds: a video sits in several folds' evaluation sets)
    and weights each query by ``c_query * mean(c_support)`` of its episode:
    the first-order effect of redrawing episodes from the resampled video
    set.  With several folds it also redraws the folds with replacement
    (counts ``f``), and the replicate is ``sum_f f_f * mean_f / F``.

    Args:
        values: ``F`` arrays ``(K, E_f, M)``, per fold the statistics of
            its queries (e.g. 0/1 correctness of ``K`` variants).
        queries: ``F`` arrays ``(E_f, M)`` of query video indices;
            supports ``F`` arrays ``(E_f, S)``; indices in
            ``0..num_videos-1``.

    Returns:
        tuple: ``observed`` ``(K,)`` (mean over folds of the fold means)
        and ``replicates`` ``(B, K)``.
    """
    rng = np.random.default_rng(seed)
    folds = len(values)
    counts = rng.multinomial(
        num_videos, np.full(num_videos, 1 / num_videos),
        size=replicates).astype(np.float64)  # (B, V)
    fold_counts = (
        rng.multinomial(folds, np.full(folds, 1 / folds),
                        size=replicates).astype(np.float64)
        if folds > 1 else np.ones((replicates, 1)))
    stats = np.zeros((replicates, values[0].shape[0]))
    for f, (vals, q, s) in enumerate(zip(values, queries, supports)):
        flat = vals.reshape(vals.shape[0], -1).astype(np.float64).T
        for lo in range(0, replicates, chunk):
            c = counts[lo:lo + chunk]
            weight = (c[:, q] *
                      c[:, s].mean(-1)[:, :, None]).reshape(c.shape[0],
                                                            -1)  # (b, E * M)
            fold_stat = (weight @ flat) / np.maximum(
                weight.sum(1, keepdims=True), 1e-12)
            stats[lo:lo + chunk] += fold_counts[lo:lo + chunk, f, None] * \
                fold_stat
    observed = np.mean([v.reshape(v.shape[0], -1).mean(1) for v in values],
                       axis=0)
    return observed, stats / folds


def interval(observed: float, replicates: np.ndarray) -> dict:
    low, high = np.percentile(replicates, [2.5, 97.5])
    return dict(
        diff=round(100 * float(observed), 2),
        ci95=[round(100 * float(low), 2),
              round(100 * float(high), 2)],
        p_le_0=round(float(np.mean(replicates <= 0)), 4))


def bootstrap_difference(correct_a,
                         correct_b,
                         queries,
                         supports,
                         num_videos: int,
                         replicates: int,
                         seed: int = 0) -> dict:
    """Paired accuracy difference ``a - b`` on one fold with a bootstrap
    over videos (:func:`bootstrap_folds`).

    Args:
        correct_a, correct_b: ``(E, M)`` 0/1 correctness of the two variants.
        queries: ``(E, M)`` query video indices; supports ``(E, S)``.

    Returns:
        dict: ``diff`` (points), ``ci95`` = ``[low, high]`` (percentile
        interval, points), ``p_le_0`` (share of replicates with diff <= 0).
    """
    diff = correct_a.astype(np.float64) - correct_b
    observed, reps = bootstrap_folds([diff[None]], [queries], [supports],
                                     num_videos, replicates, seed)
    return interval(observed[0], reps[:, 0])


def evidence_signals(pred: dict, groups: tuple = ()) -> dict:
    """Label-free per-query scores for "flow is the right modality" (larger
    = flow more likely), each ``(E, M)``: ASI's ``pi_flow``, the flow -
    RGB differences of the posterior statistics and of every
    :func:`episode_evidence` group the model computed (``groups``, in its
    order), and the cross-modal ``p_rgb(flow's class) - p_flow(rgb's
    class)``."""
    p_r, p_f = pred['rgb_score'], pred['flow_score']

    def top2(p):
        top = -np.sort(-p, -1)
        return top[..., 0], top[..., 0] - top[..., 1]

    def entropy(p):
        return -(p * np.log(np.maximum(p, 1e-12))).sum(-1)

    (top_r, margin_r), (top_f, margin_f) = top2(p_r), top2(p_f)
    cross_r = np.take_along_axis(p_r, p_f.argmax(-1)[..., None], -1)[..., 0]
    cross_f = np.take_along_axis(p_f, p_r.argmax(-1)[..., None], -1)[..., 0]
    out = dict(
        pi_flow=pred['reliability'][..., 1],
        top_probability=top_f - top_r,
        probability_margin=margin_f - margin_r,
        entropy=entropy(p_r) - entropy(p_f),
        cross_probability=cross_r - cross_f)
    evidence, column = pred.get('episode_evidence'), 0
    for group in groups:
        if group == 'support_consistency':
            loo = evidence[..., column:column + 2]
            ratio = evidence[..., column + 2:column + 4]
            out['support_loo_accuracy'] = loo[..., 1] - loo[..., 0]
            out['support_within_between'] = ratio[..., 0] - ratio[..., 1]
            column += 4
        else:
            pair = evidence[..., column:column + 2]
            out[group] = pair[..., 1] - pair[..., 0]
            column += 2
    return out


def signal_aurocs(signals: dict, rgb_ok: np.ndarray,
                  flow_ok: np.ndarray) -> dict:
    """AUROC (%) of each signal for "flow is right" on the queries where
    exactly one modality is right (50: no information)."""
    from amfir_mm.evaluation import auroc
    one = rgb_ok ^ flow_ok
    return {
        k: 100 * auroc(v[one].ravel(), flow_ok[one].ravel())
        for k, v in signals.items()
    }


def _spread(per_run: list) -> dict:
    """mean / min / max over runs (folds x seeds) of each key."""
    return {
        key:
        dict(
            mean=round(float(np.nanmean([s[key] for s in per_run])), 4),
            min=round(float(np.nanmin([s[key] for s in per_run])), 4),
            max=round(float(np.nanmax([s[key] for s in per_run])), 4))
        for key in per_run[0]
    }


def comparisons(names: list) -> list:
    """The paired differences reported: ``amfir`` against every model,
    baseline and its own controls (not other models' branches and
    controls); every multimodal model ``X`` against its mean-pi and shuffled-pi
    controls; and each branch of the AMD models against the same branch of
    ``amfir_ce`` (does distillation lift it?)."""
    derived = tuple(SUFFIXES)
    pairs = [
        ('amfir', n) for n in names
        if n != 'amfir' and (not n.endswith(derived) or n.startswith('amfir_')
                             and n[len('amfir'):] in derived)
    ]
    for name in MULTIMODAL:
        if name != 'amfir' and name in names:
            pairs += [(name, n) for n in SINGLE[:4] if n in names]
    for name in names:
        for control in ('mean_pi', 'shuffled_pi'):
            if name != 'amfir' and f'{name}_{control}' in names:
                pairs.append((name, f'{name}_{control}'))
    for name in ('amfir_ml', 'amfir_amd_pi', 'amfir', 'amfir_rkd',
                 'amfir_selected'):
        for m in ('rgb', 'flow'):
            if f'{name}_{m}' in names and f'amfir_ce_{m}' in names:
                pairs.append((f'{name}_{m}', f'amfir_ce_{m}'))
    for name in ('amfir_transductive', 'amfir_frozen_transductive'):
        if name in names:
            pairs += [(name, n) for n in names if n.endswith('_transductive')
                      and n != name and not n.startswith('amfir')]
    return pairs


def summarise(folds: list, num_videos: int, replicates: int) -> dict:
    """Accuracies, paired differences (:func:`comparisons`), ASI's
    selection statistics and the evidence signals' AUROCs over the folds.

    Each fold is ``dict(correct=..., queries=..., supports=..., runs=...)``:
    ``correct`` per variant ``(E, M)`` correctness averaged over the seeds;
    ``runs`` per multimodal model a list (one per seed) of ``dict(pi=(E, M,
    2), rgb_ok=, flow_ok=, signals=)``."""
    from amfir_mm.evaluation import mean_ci95, selection_skill
    names = list(folds[0]['correct'])
    values = [
        np.stack([f['correct'][n] for n in names]).astype(np.float32)
        for f in folds
    ]
    observed, reps = bootstrap_folds(values, [f['queries'] for f in folds],
                                     [f['supports'] for f in folds],
                                     num_videos, replicates)
    variants = {}
    for k, name in enumerate(names):
        low, high = np.percentile(reps[:, k], [2.5, 97.5])
        per_fold = [mean_ci95(f['correct'][name].mean(1)) for f in folds]
        variants[name] = dict(
            acc=round(100 * float(observed[k]), 2),
            ci95=[round(100 * float(low), 2),
                  round(100 * float(high), 2)],
            per_fold=[round(100 * m, 2) for m, _ in per_fold],
            episode_ci95=[round(100 * c, 2) for _, c in per_fold])
    paired = {}
    for a, b in comparisons(names):
        i, j = names.index(a), names.index(b)
        paired[f'{a}-{b}'] = interval(observed[i] - observed[j],
                                      reps[:, i] - reps[:, j])
    asi, signals = {}, {}
    for model in folds[0]['runs']:
        per_run, per_signal = [], []
        for f in folds:
            for run in f['runs'][model]:
                pi, rgb_ok, flow_ok = run['pi'], run['rgb_ok'], run['flow_ok']
                stats = selection_skill(pi[..., 1].ravel(), rgb_ok.ravel(),
                                        flow_ok.ravel())
                stats.update(
                    choice_flow=100 * float((pi[..., 1] > 0.5).mean()),
                    mean_pi_flow=float(pi[..., 1].mean()))
                per_run.append(stats)
                per_signal.append(
                    signal_aurocs(run['signals'], rgb_ok, flow_ok))
        asi[model] = _spread(per_run)
        signals[model] = _spread(per_signal)
    singles = [k for k in SINGLE if k in variants]
    best_single = max(singles, key=lambda k: variants[k]['acc'])
    return dict(
        variants=variants,
        paired=paired,
        asi=asi,
        signal_auroc=signals,
        best_single=best_single)


# -- 5. the run --------------------------------------------------------------
def default_iters(cfg, args) -> int:
    if args.iters is not None:
        return args.iters
    return cfg.train_cfg.max_iters // (1 if args.shots == 1 else 3)


def train_arm(cfg,
              args,
              arm: dict,
              feats: dict,
              pool: dict,
              train_videos: np.ndarray,
              iters: int,
              seed: int,
              ways: int = NUM_WAYS) -> tuple:
    """Build and meta-train one model on ``ways``-way episodes (and, for a
    multimodal one with ``asi_fit='heldout'``, its held-out ASI stage);
    returns the model and the seconds taken."""
    start = time.monotonic()
    torch.manual_seed(seed)  # the same initial weights in every arm
    model = build_model(cfg, arm)
    initial = copy.deepcopy(model.state_dict())
    train_cached(
        cfg,
        model,
        feats['train'],
        pool,
        train_videos,
        args.shots,
        iters,
        seed,
        ways=ways)
    if getattr(model, 'asi', None) is not None and arm.get(
            'asi_fit', args.asi_fit) == 'heldout':
        fit_asi_heldout(cfg, model, initial, arm, feats, pool, train_videos,
                        args.shots, iters, seed + 7)
    return model, time.monotonic() - start


def inner_splits(train_cls: list, held_out: int = 2) -> list:
    """The inner class folds of an outer fold's training classes: split
    ``i`` holds out the ``held_out`` classes ``i, i + 1, ...`` (cyclically)
    for validation and meta-trains on the rest, so every class is held out
    equally often (``len(train_cls)`` splits).

    Raises:
        ValueError: too few classes for 2-way validation episodes and 2-way
            meta-training.
    """
    n = len(train_cls)
    if held_out < 2 or n - held_out < 2:
        raise ValueError(f'inner folds need >= 2 classes on either side; '
                         f'{n} training classes, {held_out} held out')
    splits = []
    for i in range(n):
        out = [train_cls[(i + j) % n] for j in range(held_out)]
        splits.append(([c for c in train_cls if c not in out], out))
    return splits


def select_settings(cfg, args, pool: dict, feats: dict, train_cls: list,
                    fold: int, iters: int) -> dict:
    """Choose ``amfir_selected``'s settings for one outer fold from its
    training classes alone (the fold's evaluation classes are never
    touched): for every inner split (:func:`inner_splits`: 3 classes to
    meta-train on in 3-way episodes, 2 held out) each candidate of
    ``SELECTION`` is meta-trained (one seed; ASI trained with the branches,
    no held-out stage) and scored on ``--inner-episodes`` fixed-seed 2-way
    episodes of the held-out classes at every sharpness (predicted once,
    the branches re-fused with ``pi ** beta``); the setting with
    the best mean fused accuracy over the splits wins, ties going to the
    earlier candidate and the smaller sharpness (the simpler model).

    Returns:
        dict: ``candidate``, ``sharpness``, the winning ``arm`` and
        ``inner_accuracy`` (%, per setting, mean over the splits).
    """
    from amfir_mm.models.fusion import sharpen_reliability
    labels, test = pool['labels'], feats['test']
    accuracy = {}
    for i, (inner_train, inner_val) in enumerate(inner_splits(train_cls)):
        train_videos = np.flatnonzero(np.isin(labels, inner_train))
        val_videos = np.flatnonzero(np.isin(labels, inner_val))
        val_eps = episodes_of(pool, val_videos, args.shots, 1,
                              args.inner_episodes, args.seed + 100 + i,
                              'inner validation classes', len(inner_val))
        for name, arm in SELECTION['candidates'].items():
            model, _ = train_arm(cfg, args, dict(arm,
                                                 asi_fit='joint'), feats, pool,
                                 train_videos, iters, 5000 + 100 * fold + i,
                                 len(inner_train))
            val_feats = {m: test[m][val_videos] for m in model.modalities}
            pred = predict_all(model, val_eps, val_feats)  # beta = 1
            branches = [pred['rgb_score'], pred['flow_score']]
            log_pi = torch.from_numpy(pred['reliability']).double().log()
            for beta in SELECTION['sharpness']:  # AMI's rule, re-fused
                weights = sharpen_reliability(log_pi, beta).numpy()
                fused = fuse(branches, weights, model.fusion)
                ok = fused.argmax(-1) == pred['labels']
                accuracy.setdefault(f'{name} beta={beta:g}',
                                    []).append(100 * float(ok.mean()))
    means = {k: round(float(np.mean(v)), 2) for k, v in accuracy.items()}
    best = max(means, key=means.get)  # the first of equal ones
    name, beta = best.split(' beta=')
    return dict(
        candidate=name,
        sharpness=float(beta),
        arm=dict(SELECTION['candidates'][name], fusion_sharpness=float(beta)),
        inner_accuracy=means)


def training_twin(models: dict, name: str):
    """The first arm before ``name`` in ``models`` that trains exactly as
    it does (the arms differ at most in AMI's test-time
    ``fusion_sharpness``), or None: its trained model can be reused."""

    def training(arm):
        return {k: v for k, v in arm.items() if k != 'fusion_sharpness'}

    for other, arm in models.items():
        if other == name:
            return None
        if training(arm) == training(models[name]):
            return other
    raise KeyError(name)


def run_fold(cfg, args, pool: dict, feats: dict, train_cls, eval_cls,
             fold: int, iters: int, episodes_file: str) -> tuple:
    """Train every model on one fold, once per seed, and score its
    variants (correctness averaged over the seeds)."""
    labels = pool['labels']
    train_videos = np.flatnonzero(np.isin(labels, train_cls))
    eval_videos = np.flatnonzero(np.isin(labels, eval_cls))
    eval_eps = episodes_of(pool, eval_videos, args.shots, 1, args.episodes,
                           args.seed, 'the evaluation classes')
    eval_eps.save_episodes(episodes_file)
    fit_eps = episodes_of(pool, train_videos, args.shots, 1, args.fit_episodes,
                          args.seed + 1, 'the training classes')
    models = dict(MODELS, **(ABLATIONS if args.ablations else {}))
    test = feats['test']
    correct, runs, trainable = {}, {}, {}
    info = dict(train_s={}, loglinear_global_w_rgb=[])
    start = time.monotonic()
    if args.select:
        choice = select_settings(cfg, args, pool, feats, list(train_cls), fold,
                                 iters)
        models['amfir_selected'] = choice.pop('arm')
        info['selection'] = dict(
            choice, seconds=round(time.monotonic() - start, 1))
        print(
            f'  fold {fold + 1}: inner folds chose {choice["candidate"]}, '
            f'sharpness {choice["sharpness"]:g}, '
            f'{time.monotonic() - start:.0f} s',
            flush=True)
    for s in range(args.seeds):
        preds, fit, fusion, transductive = {}, {}, {}, {}
        trained = {}
        for name, arm in models.items():
            twin = training_twin(models, name)
            if twin is None:
                model, seconds = train_arm(cfg, args, arm, feats, pool,
                                           train_videos, iters,
                                           1000 * s + fold + 1)
            else:  # trained alike (same seed): only AMI's sharpness differs
                model, seconds = copy.deepcopy(trained[twin]), 0.0
                model.fusion_sharpness = arm.get('fusion_sharpness', 1.0)
            trained[name] = model
            if name not in trainable:
                trainable[name] = trainable_parameters(model)
            info['train_s'][name] = info['train_s'].get(name, 0) + round(
                seconds, 2)
            eval_feats = {m: test[m][eval_videos] for m in model.modalities}
            preds[name] = predict_all(model, eval_eps, eval_feats)
            if args.transductive and name in TRANSDUCTIVE:
                transductive[f'{name}_transductive'] = predict_transductive(
                    model, preds[name], eval_feats)
            if name in ('rgb_adapter', 'flow_adapter'):
                fit[name] = predict_all(
                    model, fit_eps,
                    {m: test[m][train_videos]
                     for m in model.modalities})
            if len(model.modalities) > 1:
                fusion[name] = model.fusion
                groups = model.asi.episode_evidence if model.asi else ()
                preds[name]['groups'] = groups
        for name in models:
            assert np.array_equal(preds[name]['queries'],
                                  preds['amfir']['queries'])
        w_rgb = fit_global_weight(fit['rgb_adapter'], fit['flow_adapter'])
        info['loglinear_global_w_rgb'].append(w_rgb)
        scores = variant_scores(
            preds,
            w_rgb,
            fusion,
            seed=1000 * s + fold,
            singles=('rgb_adapter', 'flow_adapter'))
        gt = preds['amfir']['labels']
        for name, pred in transductive.items():
            scores[name] = pred['pred_score']
            if name.endswith('adapter_transductive') and \
                    name.startswith('flow'):
                scores['late_fusion_transductive'] = fuse([
                    transductive['rgb_adapter_transductive']['pred_score'],
                    pred['pred_score']
                ], 0.5, 'log_linear')
        for name, score in scores.items():
            ok = (score.argmax(-1) == gt).astype(np.float64) / args.seeds
            correct[name] = correct.get(name, 0) + ok
        either = (scores['amfir_rgb'].argmax(-1) == gt) | (
            scores['amfir_flow'].argmax(-1) == gt)
        correct['oracle'] = correct.get('oracle', 0) + either / args.seeds
        for name in fusion:
            if models[name].get('reliability') == 'uniform':
                continue  # no ASI
            rgb_ok = preds[name]['rgb_score'].argmax(-1) == gt
            flow_ok = preds[name]['flow_score'].argmax(-1) == gt
            runs.setdefault(name, []).append(
                dict(
                    pi=preds[name]['reliability'],
                    rgb_ok=rgb_ok,
                    flow_ok=flow_ok,
                    signals=evidence_signals(preds[name],
                                             preds[name]['groups'])))
        print(
            f'  fold {fold + 1} seed {s + 1}/{args.seeds}: amfir '
            f'{100 * np.mean(scores["amfir"].argmax(-1) == gt):.2f}, '
            f'{time.monotonic() - start:.0f} s',
            flush=True)
    record = dict(
        correct=correct,
        queries=eval_videos[preds['amfir']['queries']],
        supports=eval_videos[preds['amfir']['supports']],
        runs=runs)
    names = pool['classes']
    fold_info = dict(
        train_classes=[names[c] for c in train_cls],
        eval_classes=[names[c] for c in eval_cls],
        episodes_file=episodes_file,
        seconds=round(time.monotonic() - start, 1),
        **info)
    return record, fold_info, trainable


def forked_map(function, count: int, workers: int, poll_s: float = 5.0):
    """``function(i)`` for ``i`` in ``range(count)``, yielded in order of
    ``i``, computed by ``workers`` forked processes (worker ``w`` takes
    ``i = w, w + workers, ...``).  Forked, not a pool: the function and
    everything it reads are inherited, never pickled (only the results
    are).  A worker's exception is raised here with its traceback; a
    worker that dies without a result is an error too (noticed within
    ``poll_s`` seconds).

    Raises:
        RuntimeError: a worker failed or died.
    """
    import multiprocessing
    import queue as queues
    import traceback
    context = multiprocessing.get_context('fork')
    results = context.Queue()

    def work(indices):
        for i in indices:
            try:
                results.put((i, function(i), None))
            except BaseException:  # noqa: B902 (reported to the parent)
                results.put((i, None, traceback.format_exc()))
                return

    processes = [
        context.Process(
            target=work, args=(range(w, count, workers), ), daemon=True)
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    done = {}
    try:
        for i in range(count):
            while i not in done:
                try:
                    j, result, error = results.get(timeout=poll_s)
                except queues.Empty:
                    if not any(p.is_alive() for p in processes) and \
                            results.empty():
                        raise RuntimeError(
                            f'the worker for item {i} exited without a '
                            'result (killed?)')
                    continue
                if error is not None:
                    raise RuntimeError(f'item {j} failed in its worker '
                                       f'process:\n{error}')
                done[j] = result
            yield done.pop(i)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def run_folds(cfg, args, pool: dict, feats: dict, folds: list, iters: int,
              shot_dir: str):
    """:func:`run_fold` of every fold, yielded in fold order; with
    ``--fold-workers N > 1`` N folds run at once in forked processes
    (:func:`forked_map`; the features are shared copy-on-write, and each
    fold seeds every generator it uses, so the results are those of a
    sequential run)."""

    def one_fold(fold: int) -> tuple:
        torch.set_num_threads(args.threads)
        train_cls, eval_cls = folds[fold]
        return run_fold(cfg, args, pool, feats, train_cls, eval_cls, fold,
                        iters,
                        osp.join(shot_dir, f'eval_episodes_fold{fold}.json'))

    workers = min(args.fold_workers, len(folds))
    if workers <= 1:
        yield from map(one_fold, range(len(folds)))
    else:
        yield from forked_map(one_fold, len(folds), workers)


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        results = []
        for path in args.report:
            with open(path) as f:
                results.append(json.load(f))
        print(report_markdown(results, args.report))
        return results
    roots = dict(train=args.train_root, eval=args.eval_root)
    names = {split: class_names(root) for split, root in roots.items()}
    if args.folds:  # bad --folds fails before any work
        make_folds(
            sorted(set(names['train']) | set(names['eval'])),
            args.folds,
            seed=args.fold_seed)
    from mmengine.registry import DefaultScope

    import amfir_mm  # noqa: F401  (registers everything)
    DefaultScope.get_instance('ssv2_mini_benchmark', scope_name='mmaction')
    wall = time.monotonic()
    timings, frames, flow_cost = {}, {}, {}
    for split, root in roots.items():
        out = osp.join(args.work_dir, f'flow_{args.flow}', split)
        flow_cost[split] = extract_flow(root, out, args.flow, args.workers)
        frames[split] = out
    timings['flow_s'] = round(time.monotonic() - wall, 1)

    cfg = load_config(args)
    iters = default_iters(cfg, args)
    datasets = video_datasets(cfg, frames)
    pool = pool_videos(datasets)
    classes = pool['classes']
    if args.folds:
        folds = make_folds(classes, args.folds, seed=args.fold_seed)
    else:
        folds = [([classes.index(c) for c in names['train']],
                  [classes.index(c) for c in names['eval']])]
    start = time.monotonic()
    config_name = osp.splitext(osp.basename(args.config))[0]
    feats = cached_embeddings(
        osp.join(
            args.work_dir, f'embeddings_{args.flow}_{config_name}_'
            f'{args.views}views.pth'),
        lambda: embed(
            build_model(cfg, {}, pretrained=True), datasets, pool, args.views),
        pool['keys'], args.views)
    timings['embed_s'] = round(time.monotonic() - start, 1)

    torch.set_num_threads(args.threads)
    shot_dir = osp.join(args.work_dir, f'{args.shots}shot')
    os.makedirs(shot_dir, exist_ok=True)
    records, fold_infos = [], []
    start = time.monotonic()
    for f, (record, info, trainable) in enumerate(
            run_folds(cfg, args, pool, feats, folds, iters, shot_dir)):
        records.append(record)
        fold_infos.append(info)
        print(
            f'fold {f + 1}/{len(folds)}: eval {info["eval_classes"]}: '
            f'amfir {100 * record["correct"]["amfir"].mean():.2f}, '
            f'{info["seconds"]:.0f} s',
            flush=True)
    timings['folds_s'] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    result = summarise(records, len(pool['keys']), args.bootstrap)
    timings['bootstrap_s'] = round(time.monotonic() - start, 1)
    result.update(
        command='python benchmarks/ssv2_mini.py ' +
        ' '.join(sys.argv[1:] if argv is None else argv),
        date=time.strftime('%Y-%m-%d %H:%M'),
        machine=f'{platform.machine()}, {os.cpu_count()} CPUs, '
        f'torch {torch.__version__}, '
        f'{"CUDA" if torch.cuda.is_available() else "CPU only"}',
        load_average=[round(x, 2) for x in os.getloadavg()],
        config=osp.relpath(args.config, ROOT),
        shots=args.shots,
        ways=NUM_WAYS,
        episodes=args.episodes,
        seed=args.seed,
        num_folds=len(folds),
        cross_validation=bool(args.folds),
        fold_seed=args.fold_seed,
        folds=fold_infos,
        videos=len(pool['keys']),
        classes=classes,
        eval_videos=int(np.isin(pool['labels'], folds[0][1]).sum()),
        quick=args.quick,
        flow_method=args.flow,
        flow_cost=flow_cost,
        iters=iters,
        seeds=args.seeds,
        asi_fit=args.asi_fit,
        selection=dict(
            candidates=SELECTION['candidates'],
            sharpness=SELECTION['sharpness'],
            inner_episodes=args.inner_episodes) if args.select else None,
        transductive=args.transductive,
        views=args.views,
        fit_episodes=args.fit_episodes,
        ablations=args.ablations,
        trainable=trainable,
        timings=timings,
        episodes_file=fold_infos[0]['episodes_file'],
        wall_s=round(time.monotonic() - wall, 1))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    print(
        json.dumps(
            {k: result[k]
             for k in ('variants', 'paired', 'asi', 'wall_s')},
            indent=1))
    return result


# -- 6. Markdown for RESULTS.md ----------------------------------------------
ARM_LABELS = dict(
    rgb='RGB-only model, frozen features',
    flow='flow-only model, frozen features',
    rgb_adapter='RGB-only model + adapter',
    flow_adapter='flow-only model + adapter',
    amfir_frozen='AMFIR on frozen features (no adapter)',
    amfir_ce='AMFIR + adapter, no AMD (CE only)',
    amfir_ml='AMFIR + adapter, symmetric mutual learning',
    amfir_amd_pi='AMFIR + adapter, AMD weighted by π',
    amfir='**AMFIR (the config: adapter, AMD weighted by r, ASI, AMI)**',
    amfir_rkd='AMFIR + relation distillation (support-video similarities)',
    amfir_selected='AMFIR, settings chosen on inner folds of the training '
    'classes',
    amfir_no_asi='ablation: no ASI (π = ½ at training and test)',
    amfir_joint_scorer="ablation: ASI's joint MLP scorer instead of the "
    'shared one',
    amfir_joint_asi='ablation: ASI trained with the branches only',
    amfir_mixture='ablation: mixture fusion instead of log-linear',
    late_fusion='late fusion of the adapter models (mean of posteriors)',
    loglinear_uniform='log-linear fusion of the adapter models, uniform',
    loglinear_global='log-linear fusion, one weight fitted on training '
    'classes',
    late_fusion_transductive='transductive: log-linear fusion of the '
    'transductive adapter models',
    oracle='oracle (either AMFIR branch right)')
SUFFIXES = dict(
    _rgb="'s RGB branch",
    _flow="'s flow branch",
    _no_ami=', test-time π = ½ (no AMI)',
    _mean_pi=', π = mean π of the test queries',
    _shuffled_pi=', π shuffled across test queries',
    _transductive=', transductive (opt-in)')


def variant_label(name: str) -> str:
    """The table label of a variant name."""
    if name in ARM_LABELS:
        return ARM_LABELS[name]
    for suffix, text in SUFFIXES.items():
        if name.endswith(suffix) and name[:-len(suffix)] in ARM_LABELS:
            base = ARM_LABELS[name[:-len(suffix)]].strip('*')
            if base.endswith('s') and text.startswith("'s"):
                text = "'" + text[2:]  # "the classes' RGB branch"
            return base + text
    return name


ASI_KEYS = dict(
    disagreement='queries with exactly one branch right (%)',
    base_rate_flow='… of which flow is the right one (base rate, %)',
    oracle_agreement='… of which ASI picks the right one (%)',
    balanced_accuracy='ASI balanced accuracy on them (%; 50 = none)',
    auroc_flow='AUROC of π_flow for "flow is right" (%; 50 = none)',
    choice_flow='queries where ASI picks flow (%)',
    mean_pi_flow='mean π_flow')


def _acc(r: dict, name: str) -> str:
    v = r['variants'].get(name)
    return f'{v["acc"]:.2f} [{v["ci95"][0]:.2f}, {v["ci95"][1]:.2f}]' \
        if v else ''


def _diff(r: dict, a: str, b: str) -> str:
    d = r['paired'].get(f'{a}-{b}')
    return f'{d["diff"]:+.2f} [{d["ci95"][0]:+.2f}, {d["ci95"][1]:+.2f}]' \
        if d else ''


def report_summary(results: list) -> str:
    """The headline tables of ``results`` (one column per result): every
    trained model with its branches and its mean-pi control, the goals,
    and the evidence signals' AUROCs."""
    cols = [f'{r["shots"]}-shot' for r in results]

    def head(first, columns=cols):
        return [
            f'| {first} | ' + ' | '.join(columns) + ' |',
            '|---' * (len(columns) + 1) + '|'
        ]

    lines = head('model: fused accuracy (%) [95% fold-and-video bootstrap]')
    models = [
        m for m in (*MODELS, 'amfir_selected', *ABLATIONS)
        if m in results[0]['variants']
    ]
    for m in models:
        lines.append(f'| {variant_label(m)} | ' +
                     ' | '.join(_acc(r, m) for r in results) + ' |')
    for m in ('late_fusion', 'loglinear_uniform', 'loglinear_global',
              'oracle'):
        lines.append(f'| {variant_label(m)} | ' +
                     ' | '.join(_acc(r, m) for r in results) + ' |')
    multimodal = [m for m in models if f'{m}_rgb' in results[0]['variants']]
    lines += [''] + head(
        'multimodal model: its RGB branch / flow branch; fused − mean-π '
        'control (points)', [c for c in cols])
    for m in multimodal:
        cells = []
        for r in results:
            rgb, flow = (
                r['variants'][f'{m}_{b}']['acc'] for b in ('rgb', 'flow'))
            cells.append(f'{rgb:.2f} / {flow:.2f}; '
                         f'{_diff(r, m, m + "_mean_pi") or "+0.00"}')
        lines.append(f'| {variant_label(m)} | ' + ' | '.join(cells) + ' |')
    lines += [''] + head('goal (points) [95% interval]')
    for r in results:
        r['_best'] = max((k for k in SINGLE[:4] if k in r['variants']),
                         key=lambda k: r['variants'][k]['acc'])
    rows = [
        ('AMFIR − best single-modality model (' +
         ' / '.join(r['_best'] for r in results) + ')',
         lambda r: _diff(r, 'amfir', r['_best'])),
        ('AMFIR − AMFIR with mean π',
         lambda r: _diff(r, 'amfir', 'amfir_mean_pi')),
        ('ASI: AUROC of π_flow on disagreement queries (%)',
         lambda r: f'{r["asi"]["amfir"]["auroc_flow"]["mean"]:.1f}'),
        ("AMD: AMFIR's RGB branch − adapter + CE's RGB branch",
         lambda r: _diff(r, 'amfir_rgb', 'amfir_ce_rgb')),
        ("AMD: AMFIR's flow branch − adapter + CE's flow branch",
         lambda r: _diff(r, 'amfir_flow', 'amfir_ce_flow')),
    ]
    if 'amfir_rkd' in results[0]['variants']:
        rows += [
            ("relation distillation: its RGB branch − adapter + CE's",
             lambda r: _diff(r, 'amfir_rkd_rgb', 'amfir_ce_rgb')),
            ('relation distillation: AMFIR − AMFIR + relations',
             lambda r: _diff(r, 'amfir', 'amfir_rkd')),
        ]
    if 'amfir_selected' in results[0]['asi']:
        rows += [
            ('AMFIR, settings chosen on inner folds − best single-modality '
             'model', lambda r: _diff(r, 'amfir_selected', r['_best'])),
            ('AMFIR, settings chosen on inner folds − its mean-π control',
             lambda r: _diff(r, 'amfir_selected', 'amfir_selected_mean_pi')),
            ('AMFIR, settings chosen on inner folds: AUROC of π_flow (%)',
             lambda r:
             f'{r["asi"]["amfir_selected"]["auroc_flow"]["mean"]:.1f}'),
            ('AMFIR (the config) − AMFIR, settings chosen on inner folds',
             lambda r: _diff(r, 'amfir', 'amfir_selected')),
        ]
    if 'amfir_frozen' in results[0]['asi']:
        rows += [
            ('AMFIR on frozen features − best single-modality model',
             lambda r: _diff(r, 'amfir_frozen', r['_best'])),
            ('AMFIR on frozen features − its mean-π control',
             lambda r: _diff(r, 'amfir_frozen', 'amfir_frozen_mean_pi')),
            ('AMFIR on frozen features: AUROC of π_flow (%)',
             lambda r: f'{r["asi"]["amfir_frozen"]["auroc_flow"]["mean"]:.1f}'
             ),
        ]
    if 'amfir_frozen_transductive' in results[0]['variants']:
        rows += [
            ('transductive AMFIR, frozen − transductive flow, frozen', lambda
             r: _diff(r, 'amfir_frozen_transductive', 'flow_transductive')),
            ('transductive AMFIR − transductive late fusion', lambda r: _diff(
                r, 'amfir_transductive', 'late_fusion_transductive'))
        ]
    for text, cell in rows:
        lines.append(f'| {text} | ' + ' | '.join(cell(r)
                                                 for r in results) + ' |')
    for r in results:
        del r['_best']
    if results[0].get('selection'):
        lines += [''] + report_selection(results)
    shown = [
        m for m in ('amfir_frozen', 'amfir')
        if m in results[0].get('signal_auroc', {})
    ]
    if shown:
        columns = [f'`{m}` {c}' for m in shown for c in cols]
        lines += [''] + head(
            'signal: AUROC (%) for "flow is right" on disagreement queries, '
            'mean over folds x seeds', columns)
        for key in results[0]['signal_auroc'][shown[0]]:
            cells = [
                f'{r["signal_auroc"][m][key]["mean"]:.1f}' for m in shown
                for r in results
            ]
            lines.append(f'| {key} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def report_selection(results: list) -> list:
    """The inner folds' choices per outer fold and each setting's inner
    accuracy, mean over the outer folds (``--select``)."""
    cols = [f'{r["shots"]}-shot' for r in results]
    lines = [
        '| inner-fold selection | ' + ' | '.join(cols) + ' |',
        '|---' * (len(cols) + 1) + '|'
    ]
    chosen = [[f['selection'] for f in r['folds']] for r in results]
    lines.append('| chosen per outer fold (candidate, sharpness) | ' +
                 ' | '.join(', '.join(f'{c["candidate"]} {c["sharpness"]:g}'
                                      for c in folds)
                            for folds in chosen) + ' |')
    for key in chosen[0][0]['inner_accuracy']:
        cells = [
            f'{np.mean([c["inner_accuracy"][key] for c in folds]):.2f}'
            for folds in chosen
        ]
        lines.append(f'| inner 2-way accuracy (%), {key} | ' +
                     ' | '.join(cells) + ' |')
    return lines


def report_markdown(results: list, paths: list) -> str:
    """The RESULTS.md tables of ``results`` (one column per result): the
    summary (:func:`report_summary`), then every variant, difference and
    statistic."""

    def head(first):
        cols = [f'{r["shots"]}-shot' for r in results]
        return [
            f'| {first} | ' + ' | '.join(cols) + ' |',
            '|---' * (len(cols) + 1) + '|'
        ]

    files = ', '.join(f'`{osp.relpath(p, ROOT)}`' for p in paths)
    lines = [f'Results: {files}', '', report_summary(results), '']
    lines += [
        '<details><summary>All variants, differences and '
        'statistics</summary>', ''
    ]
    lines += head('variant: accuracy (%), mean over folds [95% fold-and-'
                  'video bootstrap]')
    names = list(results[0]['variants'])
    for n in names:
        cells = []
        for r in results:
            v = r['variants'].get(n)
            cells.append(f'{v["acc"]:.2f} [{v["ci95"][0]:.2f}, '
                         f'{v["ci95"][1]:.2f}]' if v else '')
        lines.append(f'| {variant_label(n)} | ' + ' | '.join(cells) + ' |')
    lines += [''] + head('difference (points) [95% interval], P(≤ 0)')
    for key in results[0]['paired']:
        cells = []
        for r in results:
            d = r['paired'].get(key)
            cells.append(
                f'{d["diff"]:+.2f} [{d["ci95"][0]:+.2f}, '
                f'{d["ci95"][1]:+.2f}], {d["p_le_0"]:.3f}' if d else '')
        a, b = (variant_label(n).strip('*') for n in key.split('-'))
        lines.append(f'| {a} − {b} | ' + ' | '.join(cells) + ' |')

    def spread_table(title, field, model, labels):
        """A table of mean [min, max] rows of ``r[field][model]``."""
        rows = [''] + head(title)
        for key, text in labels.items():
            cells = []
            for r in results:
                v = r[field][model].get(key)
                digits = 4 if key == 'mean_pi_flow' else 1 \
                    if field == 'signal_auroc' else 2
                cells.append(f'{v["mean"]:.{digits}f} [{v["min"]:.{digits}f}'
                             f', {v["max"]:.{digits}f}]' if v else '')
            rows.append(f'| {text} | ' + ' | '.join(cells) + ' |')
        return rows

    for model in results[0]['asi']:
        lines += spread_table(
            f'ASI selection, `{model}`: mean over folds x seeds [min, max]',
            'asi', model, ASI_KEYS)
    for model in results[0].get('signal_auroc', {}):
        signals = results[0]['signal_auroc'][model]
        lines += spread_table(
            f'AUROC (%) of label-free signals for "flow is right", '
            f'`{model}`, queries with exactly one branch right: mean over '
            'folds x seeds [min, max]', 'signal_auroc', model,
            {k: k
             for k in signals})
    lines += [''] + head('trainable parameters per model')
    for model in results[0]['trainable']:
        cells = []
        for r in results:
            t = r['trainable'][model]
            parts = ', '.join(f'{k} {v}' for k, v in t['parts'].items())
            cells.append(f'{t["total"]} ({parts})')
        lines.append(f'| {model} | ' + ' | '.join(cells) + ' |')
    lines += [''] + head('run')
    rows = dict(
        folds=lambda r: str(r['num_folds']),
        episodes=lambda r: f'{r["episodes"]} per fold',
        iters=lambda r: f'{r["iters"]} training episodes per model',
        views=lambda r: f'{r["views"]} cached training views per video',
        asi=lambda r: 'ASI trained ' +
        ('with the branches' if r['asi_fit'] == 'joint' else
         'again on held-out videos (fit_asi_heldout)'),
        w=lambda r: 'loglinear_global w_rgb per fold: ' + ', '.join(
            '/'.join(f'{w:.2f}' for w in f['loglinear_global_w_rgb'])
            for f in r['folds']),
        embed=lambda r: f'embedding pass {r["timings"]["embed_s"]} s',
        train=lambda r: f'all folds {r["timings"]["folds_s"]} s' +
        (', of which inner-fold selection ' + str(
            round(sum(f['selection']['seconds']
                      for f in r['folds']), 1)) + ' s'
         if r.get('selection') else ''),
        wall=lambda r: f'whole run {r["wall_s"]} s (load average at the '
        f'end {r["load_average"][0]})',
        date=lambda r: f'{r["date"]}, {r["machine"]}')
    for key, cell in rows.items():
        lines.append(f'| {key} | ' + ' | '.join(cell(r)
                                                for r in results) + ' |')
    return '\n'.join(lines + ['', '</details>'])


if __name__ == '__main__':
    main()
