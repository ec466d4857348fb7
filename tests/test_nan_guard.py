"""NonFiniteLossHook: a NaN loss stops training at its iteration, naming
the term, with the weights of the previous iteration (in memory and in the
checkpoints); every config gets the hook from default_runtime.py."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch.utils.data import Dataset

from amfir_mm.engine import NonFiniteLossError
from conftest import PROJECT_ROOT

NAN_AT = 3  # 1-based iteration whose loss_b is NaN
MAX_ITERS = 6


class Points(Dataset):

    def __len__(self):
        return 64

    def __getitem__(self, idx):
        gen = torch.Generator().manual_seed(idx)
        return dict(inputs=torch.randn(2, generator=gen))


class Tiny(BaseModel):
    """A linear model with two loss terms; ``loss_b`` is NaN in the
    ``nan_at``-th forward pass, which records the weights it ran with."""

    def __init__(self, nan_at):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(2, 1)
        self.nan_at, self.calls, self.weights_at_nan = nan_at, 0, None

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.calls += 1
        out = self.linear(torch.stack(inputs))
        losses = dict(
            loss_a=(out - 1).pow(2).mean(),
            loss_b=out.abs().mean(),
            acc=torch.tensor(0.5))
        if self.calls == self.nan_at:
            losses['loss_b'] = losses['loss_b'] * float('nan')
            self.weights_at_nan = copy.deepcopy(self.state_dict())
        return losses


def default_custom_hooks():
    cfg = Config.fromfile(PROJECT_ROOT / 'configs/_base_/default_runtime.py')
    return cfg.custom_hooks


def train(tmp_path, custom_hooks):
    model = Tiny(NAN_AT)
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=Points(),
            batch_size=4,
            collate_fn=pseudo_collate,
            sampler=dict(type='DefaultSampler', shuffle=False)),
        train_cfg=dict(by_epoch=False, max_iters=MAX_ITERS),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1,
                            by_epoch=False)),
        custom_hooks=custom_hooks,
        default_scope='mmaction',
        experiment_name=f'nan_guard_{id(custom_hooks)}')
    return runner, model


def test_default_runtime_registers_the_guard():
    assert dict(type='NonFiniteLossHook') in default_custom_hooks()


def test_nan_loss_stops_with_the_last_finite_weights(tmp_path):
    runner, model = train(tmp_path, default_custom_hooks())
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    message = str(err.value)
    assert f'iteration {NAN_AT} of {MAX_ITERS}' in message
    assert 'loss_b = nan' in message and 'loss_a' not in message
    assert model.calls == NAN_AT
    # the weights are those the NaN iteration started from: 2 steps done
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all(), name
        torch.testing.assert_close(
            value, model.weights_at_nan[name], rtol=0, atol=0)
    assert not torch.equal(model.weights_at_nan['linear.weight'],
                           Tiny(NAN_AT).linear.weight)  # it did train
    # checkpoints: the finite iterations only, the last one = the weights
    saved = sorted(p.name for p in tmp_path.glob('iter_*.pth'))
    assert saved == [f'iter_{i}.pth' for i in range(1, NAN_AT)]
    last = _load_checkpoint(
        str(tmp_path / f'iter_{NAN_AT - 1}.pth'),
        map_location='cpu')['state_dict']
    for name, value in model.weights_at_nan.items():
        torch.testing.assert_close(last[name], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    'custom_hooks', [[], [dict(type='NonFiniteLossHook', enabled=False)]],
    ids=['no_hook', 'disabled'])
def test_without_the_guard_training_goes_on_with_nan_weights(
        tmp_path, custom_hooks):
    runner, model = train(tmp_path, custom_hooks)
    runner.train()
    assert model.calls == MAX_ITERS
    assert torch.isnan(model.linear.weight).all()


def test_inf_in_a_batch_of_terms_is_named():
    from amfir_mm.engine.hooks import non_finite_terms
    losses = dict(
        loss_x=[torch.tensor(1.0),
                torch.tensor([2.0, -float('inf')])],
        loss_y=torch.tensor(3.0),
        acc=torch.tensor(float('nan')))
    assert non_finite_terms(losses) == dict(loss_x=-float('inf'))
