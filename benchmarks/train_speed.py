"""Meta-training speed: amfir-mm's MMEngine train step vs a TRX-style loop.

    python benchmarks/train_speed.py --out /tmp/train_speed.json
        [--device cpu|cuda] [--amp] [--backbones resnet18 ...] [--size PX]
        [--frames 8] [--ways 5] [--shots 1] [--queries 1]
        [--tasks-per-batch 16] [--warmup 2] [--episodes 16] [--repeats 1]
        [--threads N]

One training episode = forward + backward (+ the optimiser step every
``--tasks-per-batch`` episodes) of an N-way K-shot episode with Q queries
per class, ``V = N * (K + Q)`` videos of ``T`` frames, RGB (3 channels) and
flow (2 channels), random 0..255 frames (speed only).  Defaults: 5-way
1-shot, 1 query per class, 8 frames, 112 px on CPU (ResNet-18 and
EfficientNet-Lite0), 224 px on CUDA (ResNet-50, ResNet-18,
EfficientNet-Lite0).  Every row uses the same model: ``AMFIRRecognizer``
from ``configs/_base_/models/amfir_paired.py`` (OTAM heads, ASI, AMD, AMI)
with the backbones swapped and randomly initialised (seed 0), and the same
optimiser settings, from ``configs/_base_/schedules/amfir_sgd.py`` (SGD lr
1e-3, momentum 0.9, weight decay 5e-4, gradient norm clipped at 40, one
step per 16 episodes).

Loops (``loop`` in the output):

* ``amfir_mm``: what ``tools/train.py`` runs per iteration: the episode as
  :class:`EpisodicDataset` and MMEngine's ``pseudo_collate`` give it (all
  ``V * T`` frames of a modality in one tensor, support then queries) goes
  through ``model.train_step(data, optim_wrapper)``: the
  ``MultiModalDataPreprocessor`` (device copy, normalisation), one backbone
  call per modality over all frames, the loss terms, and MMEngine's
  ``OptimWrapper`` (``accumulative_counts=16``: loss / 16, backward, clip +
  step + zero_grad every 16th episode).  ``--amp``: ``AmpOptimWrapper``.
* ``amfir_mm+channels_last``: the same after
  :func:`amfir_mm.utils.convert_to_channels_last` (``--channels-last``).
* ``trx_style``: TRX's training loop (Perrett et al., CVPR 2021,
  github.com/tobyperrett/trx ``run.py`` / ``model.py``) around the same
  modules and weights: the loader hands over the context (support) and
  target (query) clips separately; per modality the backbone runs on the
  context frames and on the target frames in two calls, features are
  average-pooled; the same head and loss terms follow
  (``model.episode_outputs`` / ``episode_losses``); loss / tasks_per_batch,
  ``backward()`` every episode, and every ``tasks_per_batch`` episodes
  gradient clipping (as the project's schedule; TRX itself does not clip),
  ``optimizer.step()`` and ``zero_grad()`` with a plain ``torch.optim.SGD``.
  Normalisation runs in the step, as the preprocessor does in
  ``amfir_mm`` (TRX normalises in its loader workers).  ``--amp``:
  ``torch.autocast`` + ``GradScaler``.

Both loops compute the same loss on the same weights and episode
(``tests/test_train_speed.py``), except that BatchNorm in training mode
normalises support and query frames as one batch in ``amfir_mm`` and as two
in ``trx_style``; ``--norm-eval`` freezes BN statistics and makes the two
identical.

Timing: ``--warmup`` episodes, then ``--episodes`` timed episodes (a
multiple of ``--tasks-per-batch``, so that the timed window holds whole
accumulation cycles); each episode's wall time is taken with the device
synchronised.  ``median_ms``: median over the timed episodes (a plain
forward-backward episode); ``mean_ms``: total / episodes (optimiser steps
included, amortised).  Every measurement runs in its own process:
``peak_rss_mib`` is its peak resident memory (CPU; imports and model
included, ``rss_after_build_mib`` before the first episode) and
``peak_cuda_mib`` ``torch.cuda.max_memory_allocated`` (CUDA).
``user_cpu_ms`` / ``sys_cpu_ms`` / ``page_faults``: the process's CPU time
(all threads) and minor page faults per timed episode, which show where
wall time goes and are less disturbed by other jobs.  Ratios are
``trx_style / amfir_mm`` (> 1: amfir-mm is faster).  On a shared machine,
run with ``--repeats 3`` and compare medians.
"""
import argparse
import copy
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODEL_CFG = osp.join(ROOT, 'configs/_base_/models/amfir_paired.py')
SCHEDULE_CFG = osp.join(ROOT, 'configs/_base_/schedules/amfir_sgd.py')
BACKBONES = {
    'resnet18':
    dict(type='ResNet', depth=18, pretrained=None, norm_eval=False),
    'resnet50':
    dict(type='ResNet', depth=50, pretrained=None, norm_eval=False),
    'efficientnet-lite0':
    dict(
        type='EfficientNetLite',
        arch='efficientnet-lite0',
        pretrained=None,
        norm_eval=False),
}
LOOPS = ('amfir_mm', 'trx_style', 'amfir_mm+channels_last')


# -- model, optimiser settings and episodes -------------------------------
def build_model(backbone: dict,
                device: str = 'cpu',
                norm_eval: bool = False,
                seed: int = 0) -> nn.Module:
    """The project's AMFIR model with ``backbone`` in both branches.

    Args:
        backbone: an MMAction2 backbone config (e.g. ``BACKBONES[...]``).
        device: ``'cpu'`` or ``'cuda'``.
        norm_eval: freeze BatchNorm statistics (see the module doc).
        seed: weight initialisation seed.

    Returns:
        ``AMFIRRecognizer`` initialised, on ``device``, in training mode.
    """
    from mmaction.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import amfir_mm  # noqa: F401 - registers the plug-in

    cfg = Config.fromfile(MODEL_CFG).model
    backbone = dict(backbone, norm_eval=norm_eval)
    for m in ('rgb', 'flow'):
        cfg[m].backbone = copy.deepcopy(backbone)
    with DefaultScope.overwrite_default_scope('mmaction'):
        torch.manual_seed(seed)
        model = MODELS.build(cfg)
        # Random weights, but initialised: an uninitialised MMAction2 ResNet
        # runs much slower on CPU (denormal numbers).
        model.init_weights()
    return model.to(device).train()


def optim_wrapper_cfg(amp: bool = False,
                      tasks_per_batch: Optional[int] = None) -> dict:
    """The project's optimiser wrapper config (``amfir_sgd.py``)."""
    from mmengine.config import Config
    cfg = Config.fromfile(SCHEDULE_CFG).optim_wrapper.to_dict()
    if tasks_per_batch is not None:
        cfg['accumulative_counts'] = tasks_per_batch
    if amp:
        cfg.update(type='AmpOptimWrapper', loss_scale='dynamic')
    return cfg


def make_episode(ways: int = 5,
                 shots: int = 1,
                 queries: int = 1,
                 frames: int = 8,
                 size: int = 112,
                 seed: int = 0) -> dict:
    """One episode as :class:`EpisodicDataset` yields it.

    Returns:
        ``dict(inputs=dict(imgs=(V * T, 3, size, size),
        flow=(V * T, 2, size, size)), data_samples=ActionDataSample)``:
        uint8 frames, ``V = ways * (shots + queries)`` videos, support
        videos first (class-major), then queries; ``gt_label`` ``(N * Q,)``
        and the metainfo ``num_ways``, ``num_shots``, ``num_queries``.
    """
    from mmaction.structures import ActionDataSample
    gen = torch.Generator().manual_seed(seed)
    n = ways * (shots + queries) * frames
    sample = ActionDataSample().set_gt_label(
        torch.arange(ways).repeat_interleave(queries))
    sample.set_metainfo(
        dict(
            num_ways=ways,
            num_shots=shots,
            num_queries=queries,
            episode_index=seed))
    inputs = {
        key:
        torch.randint(
            0, 256, (n, c, size, size), generator=gen, dtype=torch.uint8)
        for key, c in (('imgs', 3), ('flow', 2))
    }
    return dict(inputs=inputs, data_samples=sample)


def _loss_sum(losses: Dict[str, torch.Tensor]) -> torch.Tensor:
    """MMEngine's ``BaseModel.parse_losses`` total: keys containing
    ``'loss'``."""
    return sum(v.mean() for k, v in losses.items() if 'loss' in k)


# -- (a) amfir-mm ---------------------------------------------------------
class AMFIRMMTrainer:
    """``model.train_step`` with MMEngine's (Amp)OptimWrapper, as
    ``IterBasedTrainLoop`` calls it (one episode per iteration)."""

    def __init__(self,
                 model: nn.Module,
                 optim_cfg: dict,
                 channels_last: bool = False) -> None:
        from mmengine.optim import build_optim_wrapper

        from amfir_mm.utils import convert_to_channels_last
        if channels_last:
            convert_to_channels_last(model)
        self.model = model
        # The Runner also calls initialize_count_status(model, 0, max_iters)
        # with max_iters a multiple of 16: the same behaviour until the end.
        self.optim_wrapper = build_optim_wrapper(model, optim_cfg)

    @staticmethod
    def collate(episode: dict) -> dict:
        """What the DataLoader gives (``batch_size=1``)."""
        from mmengine.dataset import pseudo_collate
        return pseudo_collate([episode])

    def loss(self, data: dict) -> torch.Tensor:
        """The total loss of a collated episode (no optimisation)."""
        data = self.model.data_preprocessor(data, True)
        return _loss_sum(self.model(**data, mode='loss'))

    def train_episode(self, data: dict) -> torch.Tensor:
        log_vars = self.model.train_step(data, self.optim_wrapper)
        return log_vars['loss'].detach()


# -- (b) TRX-style reference ----------------------------------------------
class TRXStyleTrainer:
    """TRX's training loop around the same modules (see the module doc).

    Args:
        model: the ``AMFIRRecognizer`` whose backbones, heads, ASI and loss
            modules are used.
        optim_cfg: the optimiser wrapper config (``optimizer`` and
            ``clip_grad`` are read).
        tasks_per_batch: episodes per optimiser step.
        amp: ``torch.autocast`` + ``GradScaler`` (CUDA).
        device: where the clips are moved.
    """

    def __init__(self,
                 model: nn.Module,
                 optim_cfg: dict,
                 tasks_per_batch: int = 16,
                 amp: bool = False,
                 device: str = 'cpu') -> None:
        self.model = model
        opt = dict(optim_cfg['optimizer'])
        assert opt.pop('type') == 'SGD', 'the reference implements SGD'
        self.optimizer = torch.optim.SGD(model.parameters(), **opt)
        self.clip_grad = optim_cfg.get('clip_grad')
        self.tasks_per_batch = tasks_per_batch
        self.device = torch.device(device)
        self.amp = amp
        self.scaler = None
        if amp:  # torch.amp.GradScaler from torch 2.3; the same class
            self.scaler = (
                torch.amp.GradScaler(self.device.type) if hasattr(
                    torch.amp, 'GradScaler') else torch.cuda.amp.GradScaler())
        # the same constants as the model's preprocessor: (x - mean) / std
        pre = model.data_preprocessor.preprocessors
        self.norm = {k: (p.mean, p.std) for k, p in pre.items()}
        self.iteration = 0
        self.optimizer.zero_grad()

    @staticmethod
    def split(episode: dict) -> dict:
        """The episode as TRX's loader hands it over.

        Returns:
            ``dict(context={key: (N * K * T, C, H, W)}, target={key:
            (N * Q * T, C, H, W)}, target_labels=(N * Q,), meta=...)``.
        """
        sample = episode['data_samples']
        meta = sample.metainfo
        videos = meta['num_ways'] * (meta['num_shots'] + meta['num_queries'])
        context, target = {}, {}
        for key, clips in episode['inputs'].items():
            frames = clips.shape[0] // videos
            n_ctx = meta['num_ways'] * meta['num_shots'] * frames
            context[key], target[key] = clips[:n_ctx], clips[n_ctx:]
        return dict(
            context=context,
            target=target,
            target_labels=sample.gt_label,
            sample=sample)

    def embed(self, backbone: nn.Module, clips: torch.Tensor,
              key: str) -> torch.Tensor:
        """``(n, C, H, W)`` raw frames -> ``(n, C')`` pooled features."""
        mean, std = self.norm[key]
        x = (clips.to(self.device) - mean) / std
        x = backbone(x)
        if isinstance(x, (tuple, list)):
            x = x[-1]
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def loss(self, task: dict) -> torch.Tensor:
        """The total loss of a task from :meth:`split` (no optimisation)."""
        model = self.model
        feats = {}
        for m, branch in model.branches.items():
            key = model.input_keys[m]
            context = self.embed(branch.backbone, task['context'][key], key)
            target = self.embed(branch.backbone, task['target'][key], key)
            # (1, V * T, C'): support then queries, as the heads expect
            feats[m] = torch.cat([context, target])[None]
        out = model.episode_outputs(feats, [task['sample']])[0]
        labels = task['target_labels'].to(self.device)
        return _loss_sum(model.episode_losses(out, labels))

    def train_episode(self, task: dict) -> torch.Tensor:
        """TRX's ``train_task`` + its optimise-every-``tasks_per_batch``
        rule (here after episodes 16, 32, ..., as MMEngine's wrapper)."""
        with torch.autocast(self.device.type, enabled=self.amp):
            loss = self.loss(task) / self.tasks_per_batch
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        self.iteration += 1
        if self.iteration % self.tasks_per_batch == 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            if self.clip_grad:
                nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.grad is not None],
                    **self.clip_grad)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad()
        return loss.detach() * self.tasks_per_batch


# -- one measurement (own process) ----------------------------------------
def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(spec: dict) -> dict:
    """Time one loop on one backbone (see the module doc for ``spec``'s
    keys, the command-line options)."""
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    device = spec['device']
    cuda = device.startswith('cuda')
    if cuda:
        torch.backends.cudnn.benchmark = spec.get('cudnn_benchmark', False)
    model = build_model(BACKBONES[spec['backbone']], device,
                        spec.get('norm_eval', False))
    optim_cfg = optim_wrapper_cfg(spec['amp'], spec['tasks_per_batch'])
    episodes = [
        make_episode(
            spec['ways'],
            spec['shots'],
            spec['queries'],
            spec['frames'],
            spec['size'],
            seed=s) for s in range(2)
    ]
    if spec['loop'] == 'trx_style':
        trainer = TRXStyleTrainer(model, optim_cfg, spec['tasks_per_batch'],
                                  spec['amp'], device)
        prepare = trainer.split
    else:
        trainer = AMFIRMMTrainer(
            model,
            optim_cfg,
            channels_last=spec['loop'].endswith('channels_last'))
        prepare = trainer.collate
    rss_build = _max_rss_mib()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    times, losses = [], []
    for i in range(spec['warmup'] + spec['episodes']):
        batch = prepare(episodes[i % len(episodes)])  # the loader's work
        if cuda:
            torch.cuda.synchronize()
        if i == spec['warmup']:
            usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        loss = trainer.train_episode(batch)
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        losses.append(float(loss))
        if i >= spec['warmup']:
            times.append(elapsed * 1000)
    end = resource.getrusage(resource.RUSAGE_SELF)
    n = len(times)
    out = dict(
        backbone=spec['backbone'],
        loop=spec['loop'],
        median_ms=round(statistics.median(times), 1),
        mean_ms=round(sum(times) / n, 1),
        min_ms=round(min(times), 1),
        episode_ms=[round(t, 1) for t in times],
        # CPU time of all threads and minor page faults, per timed episode:
        # less sensitive than wall time to other jobs on the machine
        user_cpu_ms=round(1000 * (end.ru_utime - usage.ru_utime) / n, 1),
        sys_cpu_ms=round(1000 * (end.ru_stime - usage.ru_stime) / n, 1),
        page_faults=round((end.ru_minflt - usage.ru_minflt) / n),
        first_loss=round(losses[0], 5),
        torch_threads=torch.get_num_threads())
    if cuda:
        out['peak_cuda_mib'] = round(torch.cuda.max_memory_allocated() / 2**20,
                                     1)
    out['rss_after_build_mib'] = round(rss_build, 1)
    out['peak_rss_mib'] = round(_max_rss_mib(), 1)
    return out


def _run_in_subprocess(spec: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = osp.join(tmp, 'result.json')
        proc = subprocess.run([
            sys.executable,
            osp.abspath(__file__), '--worker',
            json.dumps(dict(spec, result=result))
        ],
                              cwd=ROOT,
                              capture_output=True,
                              text=True)
        if proc.returncode != 0 or not osp.isfile(result):
            raise RuntimeError(f'measurement {spec["backbone"]} / '
                               f'{spec["loop"]} failed:\n'
                               f'{proc.stderr[-3000:]}')
        with open(result) as f:
            return json.load(f)


def _machine(device: str) -> dict:
    info = dict(
        platform=platform.platform(),
        machine=platform.machine(),
        processor=platform.processor(),
        cpu_count=os.cpu_count(),
        python=platform.python_version(),
        torch=torch.__version__,
        torch_threads_default=torch.get_num_threads())
    if device.startswith('cuda') and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
        info['cuda'] = torch.version.cuda
    return info


def _median(values: List[float]) -> float:
    return round(statistics.median(values), 1)


def summarise(rows: List[dict]) -> Dict[str, dict]:
    """Per backbone: each loop's median over repeats and the ratios
    ``trx_style / loop``."""
    summary = {}
    for backbone in dict.fromkeys(r['backbone'] for r in rows):
        per_loop = {}
        for loop in dict.fromkeys(r['loop'] for r in rows
                                  if r['backbone'] == backbone):
            mine = [
                r for r in rows
                if r['backbone'] == backbone and r['loop'] == loop
            ]
            per_loop[loop] = dict(
                median_ms=_median([r['median_ms'] for r in mine]),
                mean_ms=_median([r['mean_ms'] for r in mine]),
                user_cpu_ms=_median([r['user_cpu_ms'] for r in mine]),
                sys_cpu_ms=_median([r['sys_cpu_ms'] for r in mine]),
                peak_rss_mib=max(r['peak_rss_mib'] for r in mine))
            if 'peak_cuda_mib' in mine[0]:
                per_loop[loop]['peak_cuda_mib'] = max(r['peak_cuda_mib']
                                                      for r in mine)
        ref = per_loop.get('trx_style')
        if ref:
            for loop, res in per_loop.items():
                if loop != 'trx_style':
                    res['trx_style_over_this_median'] = round(
                        ref['median_ms'] / res['median_ms'], 3)
                    res['trx_style_over_this_mean'] = round(
                        ref['mean_ms'] / res['mean_ms'], 3)
        summary[backbone] = per_loop
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--out', required=True, help='JSON result path')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision (CUDA)')
    parser.add_argument(
        '--backbones',
        nargs='+',
        choices=sorted(BACKBONES),
        help='default: resnet18 efficientnet-lite0 on CPU, '
        'resnet50 resnet18 efficientnet-lite0 on CUDA')
    parser.add_argument(
        '--loops', nargs='+', choices=LOOPS, default=list(LOOPS))
    parser.add_argument(
        '--size', type=int, help='crop size, px (default: 112 CPU, 224 CUDA)')
    parser.add_argument('--frames', type=int, default=8)
    parser.add_argument('--ways', type=int, default=5)
    parser.add_argument('--shots', type=int, default=1)
    parser.add_argument(
        '--queries', type=int, default=1, help='queries per class')
    parser.add_argument(
        '--tasks-per-batch',
        type=int,
        default=16,
        help='episodes per optimiser step')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--episodes',
        type=int,
        default=16,
        help='timed episodes (a multiple of '
        '--tasks-per-batch)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=1,
        help='measure every row this many times, '
        'interleaved; the summary takes medians')
    parser.add_argument(
        '--threads', type=int, help='torch threads (default: torch\'s)')
    parser.add_argument(
        '--norm-eval',
        action='store_true',
        help='frozen BN statistics (identical semantics)')
    parser.add_argument('--cudnn-benchmark', action='store_true')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cuda = args.device.startswith('cuda')
    if args.amp and not cuda:
        parser.error('--amp needs --device cuda (MMEngine\'s '
                     'AmpOptimWrapper runs on GPUs only)')
    if cuda and not torch.cuda.is_available():
        parser.error('--device cuda: this torch has no CUDA')
    if args.episodes % args.tasks_per_batch:
        parser.error('--episodes must be a multiple of --tasks-per-batch '
                     '(whole accumulation cycles)')
    args.backbones = args.backbones or ([
        'resnet50', 'resnet18', 'efficientnet-lite0'
    ] if cuda else ['resnet18', 'efficientnet-lite0'])
    args.size = args.size or (224 if cuda else 112)
    return args


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == '--worker':
        spec = json.loads(sys.argv[2])
        result = measure(spec)
        with open(spec['result'], 'w') as f:
            json.dump(result, f)
        return result
    args = parse_args(argv)
    setting = dict(
        device=args.device,
        amp=args.amp,
        ways=args.ways,
        shots=args.shots,
        queries=args.queries,
        frames=args.frames,
        size=args.size,
        tasks_per_batch=args.tasks_per_batch,
        warmup=args.warmup,
        episodes=args.episodes,
        threads=args.threads,
        norm_eval=args.norm_eval,
        cudnn_benchmark=args.cudnn_benchmark)
    load_start = os.getloadavg()
    start = time.time()
    rows = []
    for _ in range(args.repeats):
        for backbone in args.backbones:
            for loop in args.loops:
                row = _run_in_subprocess(
                    dict(setting, backbone=backbone, loop=loop))
                print(
                    f'{backbone:20s} {loop:24s} median '
                    f'{row["median_ms"]:9.1f} ms  mean '
                    f'{row["mean_ms"]:9.1f} ms  peak RSS '
                    f'{row["peak_rss_mib"]:7.0f} MiB',
                    flush=True)
                rows.append(row)
    out = dict(
        command='python benchmarks/train_speed.py ' +
        ' '.join(sys.argv[1:] if argv is None else argv),
        date=time.strftime('%Y-%m-%d %H:%M'),
        machine=_machine(args.device),
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
        wall_s=round(time.time() - start, 1),
        setting=dict(
            setting,
            videos_per_episode=args.ways * (args.shots + args.queries),
            model='AMFIRRecognizer '
            '(amfir_paired.py: OTAM heads, ASI, AMD, AMI), RGB + 2-channel '
            'flow, random init',
            schedule='amfir_sgd.py'),
        summary=summarise(rows),
        results=rows)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out['summary'], indent=1))
    return out


if __name__ == '__main__':
    main()
