"""The project's runtime (``configs/_base_/default_runtime.py``) writes the
training curves to TensorBoard: the logged ``loss`` is the smoothed loss of
the iterations that ran."""
import glob
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from tensorboard.backend.event_processing.event_accumulator import \
    EventAccumulator

import amfir_mm  # noqa: F401 (NonFiniteLossHook of the runtime's hooks)
from conftest import LineModel, LinePoints

ROOT = Path(__file__).resolve().parents[1]


class _LossRecorder(Hook):
    """The loss of every training iteration, as the model returned it."""

    def __init__(self):
        self.losses = []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss'].detach()))


def test_project_runtime_writes_training_loss_to_tensorboard(tmp_path):
    runtime = Config.fromfile(
        str(ROOT / 'configs' / '_base_' / 'default_runtime.py'))
    assert dict(type='TensorboardVisBackend') in runtime.vis_backends
    default_hooks = runtime.default_hooks.to_dict()
    default_hooks['logger']['interval'] = 1
    default_hooks['checkpoint'] = None
    recorder = _LossRecorder()
    iters = 6
    runner = Runner(
        model=LineModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=LinePoints(),
            sampler=dict(type='InfiniteSampler'),
            batch_size=4,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=default_hooks,
        custom_hooks=runtime.custom_hooks + [recorder],
        log_processor=runtime.log_processor,
        visualizer=runtime.visualizer,
        default_scope=runtime.default_scope,
        experiment_name='tensorboard_curves')
    runner.train()
    events = glob.glob(f'{tmp_path}/**/events.out.tfevents.*', recursive=True)
    assert len(events) == 1, events
    acc = EventAccumulator(events[0])
    acc.Reload()
    logged = acc.Scalars('loss')
    assert [e.step for e in logged] == list(range(1, iters + 1))
    # LogProcessor: the mean over the last `window_size` iterations
    window = runtime.log_processor.window_size
    losses = np.array(recorder.losses)
    assert len(losses) == iters and losses[-1] < losses[0]
    expected = [
        losses[max(0, i + 1 - window):i + 1].mean() for i in range(iters)
    ]
    assert [e.value for e in logged] == pytest.approx(expected, rel=1e-5)
