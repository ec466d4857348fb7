"""Kill and resume: a training run killed (SIGKILL) between checkpoints and
resumed with ``tools/train.py --resume`` trains on the same episodes, with
the same augmented frames, dropout masks and losses, and ends with the same
weights as an uninterrupted run of the same length (the RNG states travel
in the checkpoints: amfir_mm.engine.hooks.RNGStateHook)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn
from mmaction.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner.checkpoint import _load_checkpoint
from torch.utils.data import Dataset

from amfir_mm.utils import build_runner
from conftest import PROJECT_ROOT

MAX_ITERS, CKPT_EVERY, STALL_AT = 12, 4, 6


# -- in process: the RNG state travels in the checkpoint ---------------------
@MODELS.register_module(force=True)
class DropoutLine(BaseModel):
    """``loss = mean((w . dropout(x) + b - 1)^2)``: every step draws a
    dropout mask from torch's global generator."""

    def __init__(self):
        super().__init__()
        self.linear, self.drop = nn.Linear(4, 1), nn.Dropout(0.5)

    def forward(self, inputs, data_samples=None, mode='loss'):
        out = self.linear(self.drop(torch.stack(inputs)))
        return dict(loss=(out - 1).pow(2).mean())


@DATASETS.register_module(force=True)
class RandomPoints(Dataset):

    def __len__(self):
        return 64

    def __getitem__(self, idx):
        return dict(
            inputs=torch.randn(
                4, generator=torch.Generator().manual_seed(idx)))


def dropout_runner(work_dir, max_iters, name, resume=False, **options):
    """A runner of :class:`DropoutLine` on :class:`RandomPoints`; ``options``
    are more config entries (a launcher, ``randomness``)."""
    options.setdefault('randomness', dict(seed=0))
    return build_runner(
        Config(
            dict(
                model=dict(type='DropoutLine'),
                work_dir=str(work_dir),
                train_dataloader=dict(
                    dataset=dict(type='RandomPoints'),
                    batch_size=4,
                    num_workers=0,
                    sampler=dict(type='InfiniteSampler', shuffle=True),
                    collate_fn=dict(type='pseudo_collate')),
                train_cfg=dict(by_epoch=False, max_iters=max_iters),
                optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                default_hooks=dict(
                    checkpoint=dict(
                        type='CheckpointHook', interval=3, by_epoch=False)),
                resume=resume,
                default_scope='mmaction',
                experiment_name=name,
                **options)))


def test_resume_continues_the_dropout_stream(tmp_path):
    """6 iterations at once == 3, then resumed for 3 more."""
    full = dropout_runner(tmp_path / 'full', 6, 'rng_full')
    full.train()
    dropout_runner(tmp_path / 'cut', 3, 'rng_cut').train()
    resumed = dropout_runner(tmp_path / 'cut', 6, 'rng_resumed', resume=True)
    resumed.train()
    assert resumed.iter == full.iter == 6
    for name, want in full.model.state_dict().items():
        torch.testing.assert_close(
            resumed.model.state_dict()[name], want, rtol=0, atol=0, msg=name)
    ckpt = _load_checkpoint(
        str(tmp_path / 'cut/iter_3.pth'), map_location='cpu')
    assert ckpt['rng_state']['torch'].dtype == torch.uint8


# -- two processes, each rank its own random stream --------------------------
# Run by torchrun in two processes (gloo): 6 iterations at once, then 3 and
# resumed for 3 more, with diff_rank_seed (rank r seeded 0 + r); rank 0
# saves both runs' final weights.  DDP averages the ranks' gradients, so
# the weights depend on both ranks' dropout masks.
TWO_RANKS = '''
import sys
import torch
sys.path.insert(0, {tests!r})
import amfir_mm  # noqa: F401 (the CPU launcher)
from test_resume import dropout_runner

options = dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(
    backend='gloo')), randomness=dict(seed=0, diff_rank_seed=True))
work = {work!r}
full = dropout_runner(work + '/full', 6, 'ranks_full', **options)
full.train()
dropout_runner(work + '/cut', 3, 'ranks_cut', **options).train()
resumed = dropout_runner(work + '/cut', 6, 'ranks_resumed', resume=True,
                         **options)
resumed.train()
if full.rank == 0:
    torch.save(dict(full=full.model.module.state_dict(),
                    resumed=resumed.model.module.state_dict()),
               work + '/weights.pth')
'''


@pytest.mark.slow
def test_two_ranks_resume_their_own_dropout_streams(tmp_path):
    """With diff_rank_seed, every rank's RNG state travels in the
    checkpoint (which rank 0 alone writes): 6 iterations at once == 3,
    then resumed for 3 more, in two processes."""
    script = tmp_path / 'two_ranks.py'
    script.write_text(
        TWO_RANKS.format(
            tests=str(PROJECT_ROOT / 'tests'), work=str(tmp_path)))
    port = 29700 + os.getpid() % 1000
    proc = subprocess.run([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
        '--master_port',
        str(port),
        str(script)
    ],
                          cwd=tmp_path,
                          capture_output=True,
                          text=True,
                          timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    saved = torch.load(tmp_path / 'weights.pth', weights_only=True)
    for name, want in saved['full'].items():
        torch.testing.assert_close(
            saved['resumed'][name], want, rtol=0, atol=0, msg=name)
    state = _load_checkpoint(
        str(tmp_path / 'cut/iter_3.pth'), map_location='cpu')['rng_state']
    ranks = state['per_rank']
    assert len(ranks) == 2 and not torch.equal(ranks[0]['torch'],
                                               ranks[1]['torch'])
    assert torch.equal(ranks[0]['torch'], state['torch'])


# -- tools/train.py killed with SIGKILL and resumed ---------------------------

# A test-only hook (imported by the run through custom_imports): one JSON
# line per iteration with the episode index, a checksum of the raw
# (augmented) frames and the loss; with STALL_AT_ITER set it stalls after
# that iteration, so the run can be killed at a known point.
EPISODE_LOG = '''
import json, os, time
from mmaction.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class EpisodeLogHook(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        sample = data_batch['data_samples'][0]
        record = dict(iter=runner.iter + 1,
                      episode=int(sample.episode_index),
                      frames=float(data_batch['inputs'][0].double().sum()),
                      loss=float(outputs['loss']))
        with open(os.path.join(runner.work_dir, 'episodes.jsonl'), 'a') as f:
            f.write(json.dumps(record) + '\\n')
        stall = os.environ.get('STALL_AT_ITER')
        if stall and runner.iter + 1 == int(stall):
            open(os.path.join(runner.work_dir, 'stalled'), 'w').close()
            while True:
                time.sleep(1)
'''


def write_config(tmp_path, shapes):
    """The demo's RGB config, shrunk: 2-way 1-shot, 1 query, 2 frames,
    12 iterations, a checkpoint every 4, the episode log hook; a TRX head
    with dropout, so the run draws random numbers in the main process."""
    base = PROJECT_ROOT / 'configs/demo/rgbproto_shapes_1shot_r18.py'
    (tmp_path / 'episode_log.py').write_text(EPISODE_LOG)
    path = tmp_path / 'resume_cfg.py'
    path.write_text(f"""
_base_ = [{str(base)!r}]
custom_imports = dict(imports=['amfir_mm', 'episode_log'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='NonFiniteLossHook'), dict(type='EpisodeLogHook')]
model = dict(cls_head=dict(_delete_=True, type='TRXHead', in_channels=512,
                           out_channels=64, cardinalities=(2, ), dropout=0.5))
train_cfg = dict(max_iters={MAX_ITERS})
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False,
                        T_max={MAX_ITERS}, eta_min=1e-5)]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval={CKPT_EVERY}, save_best=None, max_keep_ckpts=-1))
train_dataloader = dict(dataset=dict(
    num_ways=2, num_queries=1,
    dataset=dict(
        ann_file={str(shapes / 'splits/train.txt')!r},
        data_prefix=dict(img={str(shapes / 'rawframes')!r}),
        pipeline=[
            dict(type='SampleFrames', clip_len=1, frame_interval=1,
                 num_clips=2),
            dict(type='RawFrameDecode'),
            dict(type='Resize', scale=(-1, 40)),
            dict(type='RandomCrop', size=32),
            dict(type='FormatShape', input_format='NCHW'),
            dict(type='PackActionInputs')])))
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
""")
    return path


def train_cmd(config, work_dir, *extra):
    return [
        sys.executable, 'tools/train.py',
        str(config), '--work-dir',
        str(work_dir), '--no-validate', *extra
    ]


def run_env(tmp_path, **extra):
    env = dict(os.environ, **extra)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(tmp_path)] + ([env['PYTHONPATH']] if 'PYTHONPATH' in env else []))
    return env


def episodes(work_dir):
    """iteration -> record; a resumed run's records replace the killed
    run's for the iterations it redid."""
    lines = (work_dir / 'episodes.jsonl').read_text().splitlines()
    return {r['iter']: r for r in map(json.loads, lines)}


def weights(path):
    return _load_checkpoint(str(path), map_location='cpu')['state_dict']


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    from amfir_mm.datasets.synthetic_shapes import make_shapes_dataset
    shapes = tmp_path / 'shapes'
    make_shapes_dataset(str(shapes), videos_per_class=3, num_frames=4)
    config = write_config(tmp_path, shapes)
    full_dir, cut_dir = tmp_path / 'full', tmp_path / 'cut'

    full = subprocess.Popen(
        train_cmd(config, full_dir),
        cwd=PROJECT_ROOT,
        env=run_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)
    # the run to kill: its own process group (it and its dataloader
    # workers), stalled after iteration STALL_AT, between checkpoints
    cut = subprocess.Popen(
        train_cmd(config, cut_dir),
        cwd=PROJECT_ROOT,
        env=run_env(tmp_path, STALL_AT_ITER=str(STALL_AT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not (cut_dir / 'stalled').exists():
            assert cut.poll() is None, cut.stdout.read()[-3000:]
            assert time.monotonic() < deadline, 'the run never stalled'
            time.sleep(0.2)
        os.killpg(cut.pid, signal.SIGKILL)
        cut.wait(timeout=60)
    finally:
        if cut.poll() is None:
            os.killpg(cut.pid, signal.SIGKILL)
    assert cut.returncode == -signal.SIGKILL
    ckpts = sorted(p.name for p in cut_dir.glob('iter_*.pth'))
    assert ckpts == [f'iter_{CKPT_EVERY}.pth']  # killed before iter 8's
    assert sorted(episodes(cut_dir)) == list(range(1, STALL_AT + 1))

    resumed = subprocess.run(
        train_cmd(config, cut_dir, '--resume'),
        cwd=PROJECT_ROOT,
        env=run_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'resumed epoch: 0, iter: {CKPT_EVERY}' in resumed.stdout + \
        resumed.stderr
    out, _ = full.communicate(timeout=900)
    assert full.returncode == 0, out[-3000:]

    want, got = episodes(full_dir), episodes(cut_dir)
    assert sorted(want) == sorted(got) == list(range(1, MAX_ITERS + 1))
    assert len({r['episode'] for r in want.values()}) > 1
    for i in want:  # episode, augmented frames and loss of every iteration
        assert got[i] == want[i], (i, got[i], want[i])
    final = f'iter_{MAX_ITERS}.pth'
    want_w, got_w = weights(full_dir / final), weights(cut_dir / final)
    assert want_w.keys() == got_w.keys()
    for name in want_w:
        torch.testing.assert_close(
            got_w[name], want_w[name], rtol=0, atol=1e-6, msg=name)
    # and training moved the weights (the comparison is not vacuous)
    first = weights(cut_dir / f'iter_{CKPT_EVERY}.pth')
    assert not torch.equal(first['backbone.conv1.conv.weight'],
                           got_w['backbone.conv1.conv.weight'])
