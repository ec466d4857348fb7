"""Training options of tools/train.py, as ``apply_train_options`` sets
them: channels_last, SyncBN, AMP, resume, validation, seed, work dir."""
import copy
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmaction.registry import MODELS, RUNNERS
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import MODEL_WRAPPERS

from amfir_mm.utils import (ChannelsLastRunner, UnsupportedOptionError,
                            apply_train_options, check_device_options,
                            convert_to_channels_last, train_options)
from conftest import PROJECT_ROOT, load_script

CUDA = torch.cuda.is_available()
CL = torch.channels_last
WAYS, FRAMES, SIZE = 2, 2, 16
R18 = dict(type='ResNet', depth=18, pretrained=None, norm_eval=False)
MODEL = dict(
    type='AMFIRRecognizer',
    rgb=dict(backbone=R18, cls_head=dict(type='OTAMHead')),
    flow=dict(backbone=R18, cls_head=dict(type='OTAMHead')))


def _train_script():
    return load_script('tools/train.py', 'amfir_train_tool')


def _model(seed=0):
    """A tiny AMFIR model in float64: layouts change the float32 rounding,
    which the random OTAM / BN here amplify to ~1% (float64: 1e-12)."""
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(MODEL))
    model.init_weights()
    return model.double()  # the preprocessor too: inputs become float64


def _batch(seed=0):
    """One collated 2-way 1-shot episode (1 query per class), raw 0..255
    frames: ``imgs (6 * FRAMES, 3, SIZE, SIZE)``, ``flow (.., 2, ..)``."""
    gen = torch.Generator().manual_seed(seed)
    n = 2 * WAYS * FRAMES
    sample = ActionDataSample().set_gt_label(torch.arange(WAYS))
    sample.set_metainfo(dict(num_ways=WAYS, num_shots=1, num_queries=1))
    return pseudo_collate([
        dict(
            inputs=dict(
                imgs=torch.randint(
                    0,
                    256, (n, 3, SIZE, SIZE),
                    generator=gen,
                    dtype=torch.uint8),
                flow=torch.randint(
                    0,
                    256, (n, 2, SIZE, SIZE),
                    generator=gen,
                    dtype=torch.uint8)),
            data_samples=sample)
    ])


def _loss_and_grads(model, batch):
    model.train()
    model.zero_grad()
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if k.startswith('loss'))
    loss.backward()
    return loss.detach(), {
        n: p.grad.clone()
        for n, p in model.named_parameters() if p.grad is not None
    }


def _assert_grads_close(got, want):
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(
            got[name], want[name], rtol=1e-7, atol=1e-9, msg=name)


def _conv_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.slow
def test_channels_last_same_loss_and_layouts():
    """channels_last changes layouts only: same loss and gradients; the
    backbones see NHWC-strided inputs; re-initialising (the flow branch's
    cross-modality conv is rebuilt) keeps the layout."""
    model, batch = _model(), _batch()
    want_loss, want_grads = _loss_and_grads(model, batch)

    fast = copy.deepcopy(model)
    names = convert_to_channels_last(fast)
    assert sorted(names) == ['branches.flow.backbone', 'branches.rgb.backbone']
    assert convert_to_channels_last(fast) == names  # idempotent
    seen = []
    fast.branches.rgb.backbone.conv1.register_forward_pre_hook(
        lambda mod, args: seen.append(args[0].is_contiguous(memory_format=CL)))
    loss, grads = _loss_and_grads(fast, batch)
    assert seen == [True]
    torch.testing.assert_close(loss, want_loss, rtol=1e-9, atol=0)
    _assert_grads_close(grads, want_grads)
    assert all(w.is_contiguous(memory_format=CL) for w in _conv_weights(fast))
    fast.init_weights()
    assert all(w.is_contiguous(memory_format=CL) for w in _conv_weights(fast))


def _cfg(**entries):
    return Config(dict(optim_wrapper=dict(type='OptimWrapper'), **entries))


@pytest.fixture
def with_gpu(monkeypatch):
    """:func:`check_device_options` sees a CUDA device (on any machine)."""
    monkeypatch.setattr(train_options, 'is_cuda_available', lambda: True)


def test_train_options_set_mmengine_entries(with_gpu):
    cfg = apply_train_options(
        _cfg(randomness=dict(deterministic=True)),
        'configs/x/my_cfg.py',
        amp=True,
        sync_bn=True,
        channels_last=True,
        seed=7,
        launcher='pytorch')
    assert cfg.optim_wrapper == dict(
        type='AmpOptimWrapper', loss_scale='dynamic')
    assert cfg.sync_bn == 'torch'
    assert cfg.runner_type == 'ChannelsLastRunner'
    assert RUNNERS.get(cfg.runner_type) is ChannelsLastRunner
    assert cfg.randomness == dict(deterministic=True, seed=7)
    assert cfg.launcher == 'pytorch'
    assert cfg.work_dir == osp.join('./work_dirs', 'my_cfg')
    assert 'resume' not in cfg and 'load_from' not in cfg
    # a config's own loss scale is kept; without flags nothing is added
    cfg = apply_train_options(
        Config(dict(optim_wrapper=dict(type='OptimWrapper', loss_scale=512))),
        'c.py',
        amp=True)
    assert cfg.optim_wrapper.loss_scale == 512
    assert apply_train_options(_cfg(), 'c.py').to_dict() == dict(
        optim_wrapper=dict(type='OptimWrapper'),
        launcher='none',
        work_dir=osp.join('./work_dirs', 'c'))


def test_train_options_resume_validation_and_overrides():
    cfg = apply_train_options(
        _cfg(
            val_cfg=dict(type='ValLoop'),
            val_dataloader=dict(),
            val_evaluator=dict(),
            work_dir='from_config'),
        'c.py',
        resume='auto',
        no_validate=True)
    assert (cfg.resume, cfg.load_from) == (True, None)
    assert cfg.val_cfg is None and cfg.val_dataloader is None and \
        cfg.val_evaluator is None
    assert cfg.work_dir == 'from_config'
    cfg = apply_train_options(
        _cfg(load_from='pretrained.pth'), 'c.py', resume='ckpt/iter_5.pth')
    assert (cfg.resume, cfg.load_from) == (True, 'ckpt/iter_5.pth')
    # --cfg-options first, the flags over them, --work-dir over both
    cfg = apply_train_options(
        _cfg(),
        'c.py',
        work_dir='mine',
        seed=3,
        cfg_options={
            'work_dir': 'from_options',
            'randomness.seed': 1,
            'train_cfg.max_iters': 10
        })
    assert (cfg.work_dir, cfg.randomness.seed,
            cfg.train_cfg.max_iters) == ('mine', 3, 10)
    assert apply_train_options(
        _cfg(), 'c.py', cfg_options={
            'work_dir': 'from_options'
        }).work_dir == 'from_options'


def test_channels_last_refused_with_another_runner(with_gpu):
    with pytest.raises(UnsupportedOptionError) as info:
        apply_train_options(
            _cfg(runner_type='OtherRunner'), 'c.py', channels_last=True)
    assert str(info.value) == ("--channels-last needs ChannelsLastRunner, "
                               "but the config sets runner_type='OtherRunner'")
    assert apply_train_options(
        _cfg(runner_type='ChannelsLastRunner'), 'c.py',
        channels_last=True).runner_type == 'ChannelsLastRunner'


@pytest.mark.skipif(CUDA, reason='checks the CPU-only refusal')
def test_amp_and_sync_bn_refused_without_gpu():
    with pytest.raises(UnsupportedOptionError) as amp:
        apply_train_options(_cfg(), 'c.py', amp=True)
    assert str(amp.value) == (
        "AMP (--amp / AmpOptimWrapper) needs a GPU: MMEngine's "
        'AmpOptimWrapper runs on CUDA, NPU, MLU or MUSA, and this machine '
        'has cpu only')
    with pytest.raises(UnsupportedOptionError) as sync_bn:
        apply_train_options(_cfg(), 'c.py', sync_bn=True, launcher='pytorch')
    assert str(sync_bn.value) == (
        "SyncBN (--sync-bn / sync_bn) needs a GPU: torch's DDP and "
        'SyncBatchNorm take GPU modules only, and this machine has cpu only')
    # a config asking for them is refused the same way
    with pytest.raises(UnsupportedOptionError, match='^AMP'):
        check_device_options(
            Config(dict(optim_wrapper=dict(type='AmpOptimWrapper'))))
    # one process: MMEngine reverts SyncBN to BN itself, nothing to refuse
    assert apply_train_options(_cfg(), 'c.py', sync_bn=True).sync_bn == 'torch'


@pytest.mark.parametrize('argv,options', [
    ([], dict()),
    (['--amp', '--sync-bn', '--channels-last', '--no-validate'
      ], dict(amp=True, sync_bn=True, channels_last=True, no_validate=True)),
    (['--resume'], dict(resume='auto')),
    ([
        '--resume', 'a.pth', '--work-dir', 'w', '--seed', '4', '--launcher',
        'pytorch', '--cfg-options', 'a.b=1'
    ],
     dict(
         resume='a.pth',
         work_dir='w',
         seed=4,
         launcher='pytorch',
         cfg_options={'a.b': 1})),
])
def test_train_script_passes_its_flags(tmp_path, monkeypatch, argv, options):
    """``tools/train.py`` hands each flag to :func:`apply_train_options`."""
    monkeypatch.setenv('LOCAL_RANK', '0')  # else parse_args sets it
    train = _train_script()
    config = tmp_path / 'cfg.py'
    config.write_text('x = 1\n')
    calls = []

    class Stop(Exception):
        pass

    def record(cfg, config, **kwargs):
        calls.append((cfg.x, config, kwargs))
        raise Stop

    monkeypatch.setattr(train, 'apply_train_options', record)
    with pytest.raises(Stop):
        train.main([str(config)] + argv)
    want = dict(
        work_dir=None,
        resume=None,
        amp=False,
        channels_last=False,
        sync_bn=False,
        no_validate=False,
        seed=None,
        cfg_options=None,
        launcher='none')
    want.update(options)
    assert calls == [(1, str(config), want)]


@pytest.mark.slow
@pytest.mark.skipif(CUDA, reason='checks the CPU-only refusal')
def test_train_script_amp_without_gpu_is_one_line(tmp_path):
    proc = subprocess.run([
        sys.executable, 'tools/train.py',
        'configs/amfir_ssv2mini_1shot_r18_smoke.py', '--amp', '--work-dir',
        str(tmp_path)
    ],
                          cwd=PROJECT_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: AMP (--amp / AmpOptimWrapper) needs a '
                           'GPU'), proc.stderr[-2000:]
    assert not list(tmp_path.iterdir())  # failed before building anything


@pytest.fixture
def one_process_group(tmp_path, monkeypatch):
    """A 1-process gloo group: the Runner takes the distributed path (SyncBN
    conversion, DDP wrapping) without spawning processes."""
    monkeypatch.setenv('LOCAL_RANK', '0')
    torch_dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/pg', rank=0, world_size=1)
    yield
    torch_dist.destroy_process_group()


RUNNER_ARGS = dict(
    launcher='pytorch',
    default_scope='mmaction',
    log_level='WARNING',
    env_cfg=dict(dist_cfg=dict(backend='gloo')))


@MODEL_WRAPPERS.register_module(force=True)
class _HoldModule(nn.Module):
    """Stands in for DDP, which refuses SyncBN layers in CPU modules."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_sync_bn_converted_in_distributed_runner(tmp_path, one_process_group):
    """``sync_bn='torch'`` (``--sync-bn``) makes MMEngine's Runner convert
    every BN layer before wrapping (training with it needs a GPU)."""
    runner = RUNNERS.build(
        Config(
            dict(
                model=copy.deepcopy(MODEL),
                work_dir=str(tmp_path / 'work'),
                sync_bn='torch',
                model_wrapper_cfg=dict(type='_HoldModule'),
                **RUNNER_ARGS)))
    module = runner.model.module
    norms = [
        m for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)


@pytest.mark.slow
@pytest.mark.skipif(CUDA, reason='compares with a CPU model')
def test_channels_last_runner_converts_before_ddp(tmp_path, one_process_group):
    """Converted before DDP is built: the first DDP backward gives the
    plain model's gradients (converting an already wrapped model does not:
    DDP's gradient buckets keep the old strides)."""
    plain = _model()
    runner = ChannelsLastRunner(
        model=copy.deepcopy(plain),
        work_dir=str(tmp_path / 'work'),
        **RUNNER_ARGS)
    module = runner.model.module  # MMDistributedDataParallel
    assert all(
        w.is_contiguous(memory_format=CL) for w in _conv_weights(module))
    batch = _batch()
    want_loss, want_grads = _loss_and_grads(plain, batch)

    module.zero_grad()
    data = module.data_preprocessor(batch, True)
    losses = runner.model(**data, mode='loss')  # through DDP's forward
    loss = sum(v for k, v in losses.items() if k.startswith('loss'))
    loss.backward()
    grads = {
        n: p.grad
        for n, p in module.named_parameters() if p.grad is not None
    }
    torch.testing.assert_close(loss.detach(), want_loss, rtol=1e-4, atol=1e-5)
    _assert_grads_close(grads, want_grads)
