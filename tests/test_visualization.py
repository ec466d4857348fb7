"""Training curves reach TensorBoard through MMEngine's visualiser."""
import glob

from mmengine.runner import Runner
from tensorboard.backend.event_processing.event_accumulator import \
    EventAccumulator

from test_compat import _Line, _Points


def test_training_loss_is_written_to_tensorboard(tmp_path):
    runner = Runner(
        model=_Line(),
        work_dir=str(tmp_path),
        train_dataloader=dict(dataset=_Points(),
                              sampler=dict(type='InfiniteSampler'),
                              batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=6),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        visualizer=dict(type='Visualizer', vis_backends=[
            dict(type='TensorboardVisBackend')]),
        default_scope='mmaction',
        experiment_name='tensorboard_curves')
    runner.train()
    events = glob.glob(f'{tmp_path}/**/events.out.tfevents.*',
                       recursive=True)
    assert events, 'no TensorBoard event file written'
    acc = EventAccumulator(events[0])
    acc.Reload()
    losses = [e.value for e in acc.Scalars('loss')]
    assert len(losses) == 6
    assert losses[-1] < losses[0]  # the line fit improves
