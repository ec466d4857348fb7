"""Training options of tools/train.py: channels_last, SyncBN, AMP."""
import copy
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

from amfir_mm.utils import ChannelsLastRunner, convert_to_channels_last
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


def test_merge_args_sets_mmengine_options():
    train = _train_script()
    cfg = train.merge_args(
        Config(dict(optim_wrapper=dict(type='OptimWrapper'))),
        train.parse_args(['cfg.py', '--sync-bn', '--channels-last']))
    assert cfg.sync_bn == 'torch'
    assert cfg.runner_type == 'ChannelsLastRunner'
    assert RUNNERS.get(cfg.runner_type) is ChannelsLastRunner
    with pytest.raises(train.UnsupportedOptionError, match='runner_type'):
        train.merge_args(
            Config(dict(runner_type='OtherRunner')),
            train.parse_args(['cfg.py', '--channels-last']))


@pytest.mark.skipif(CUDA, reason='checks the CPU-only refusal')
def test_amp_and_sync_bn_refused_without_gpu():
    train = _train_script()
    with pytest.raises(train.UnsupportedOptionError, match='AMP'):
        train.merge_args(
            Config(dict(optim_wrapper=dict(type='OptimWrapper'))),
            train.parse_args(['cfg.py', '--amp']))
    with pytest.raises(train.UnsupportedOptionError, match='SyncBN'):
        train.merge_args(
            Config(dict(optim_wrapper=dict(type='OptimWrapper'))),
            train.parse_args(['cfg.py', '--sync-bn', '--launcher', 'pytorch']))
    # one process: MMEngine reverts SyncBN to BN itself, nothing to refuse
    train.merge_args(
        Config(dict(optim_wrapper=dict(type='OptimWrapper'))),
        train.parse_args(['cfg.py', '--sync-bn']))


@pytest.mark.slow
@pytest.mark.skipif(CUDA, reason='checks the CPU-only refusal')
def test_train_script_amp_without_gpu_is_one_line(tmp_path):
    proc = subprocess.run([
        sys.executable, 'tools/train.py',
        'configs/amfir_ssv2mini_r18_smoke.py', '--amp', '--work-dir',
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
